-- Run by tests/neovim.rs inside a headless Neovim (0.7 or later):
--
--   nvim --headless -u NONE -i NONE -n -c "luafile tests/neovim/snippet.lua"
--
-- with DLVERIFY_BIN (the dlverify binary), DLVERIFY_SNIPPET
-- (editors/nvim/dlverify.lua), DLVERIFY_SPEC and DLVERIFY_SPEC2 (two .dl
-- files with a mistake, in one project) and DLVERIFY_OUT (where the results
-- go, as JSON).
--
-- Loads the snippet as a user's config would, opens both files, and writes
-- what the snippet set up: each buffer's filetype and commentstring, the
-- clients attached to each (name, root folder), and the diagnostics that
-- came. Always ends Neovim: an error is written to the results too, and
-- Neovim exits with status 1.

local PATIENCE = 30000 -- ms to wait for each file's diagnostics
local out_path = os.getenv("DLVERIFY_OUT")
local results = { buffers = {} }

local function write(code)
  local file = out_path and io.open(out_path, "w")
  if file then
    file:write(vim.fn.json_encode(results))
    file:close()
  else
    code = 2
  end
  vim.cmd(code == 0 and "qa!" or "cquit " .. code)
end

-- Every running client (vim.lsp.get_clients is 0.10+).
local function all_clients()
  return (vim.lsp.get_clients or vim.lsp.get_active_clients)()
end

local function open(path)
  vim.cmd("edit " .. vim.fn.fnameescape(path))
  local buf = vim.api.nvim_get_current_buf()
  if not vim.wait(PATIENCE, function() return #vim.diagnostic.get(buf) > 0 end, 10) then
    error(string.format("no diagnostics for %s within %d ms (filetype %q, %d clients)",
      path, PATIENCE, vim.bo[buf].filetype, #all_clients()))
  end
  return buf
end

local function describe(buf)
  local attached = {}
  for _, client in ipairs(all_clients()) do
    if vim.lsp.buf_is_attached(buf, client.id) then
      table.insert(attached, { id = client.id, name = client.name, root_dir = client.config.root_dir })
    end
  end
  local diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    local lsp = d.user_data and d.user_data.lsp or {}
    table.insert(diagnostics, { lnum = d.lnum, col = d.col, code = d.code or lsp.code, source = d.source })
  end
  return {
    name = vim.api.nvim_buf_get_name(buf),
    filetype = vim.bo[buf].filetype,
    commentstring = vim.bo[buf].commentstring,
    clients = attached,
    diagnostics = diagnostics,
  }
end

local function run()
  local v = vim.version()
  results.nvim = string.format("%d.%d.%d", v.major, v.minor, v.patch)
  vim.g.dlverify_path = assert(os.getenv("DLVERIFY_BIN"), "DLVERIFY_BIN is not set")
  -- A user's Neovim detects filetypes; `-u NONE` does not.
  vim.cmd("filetype on")
  dofile(assert(os.getenv("DLVERIFY_SNIPPET"), "DLVERIFY_SNIPPET is not set"))

  local first = open(assert(os.getenv("DLVERIFY_SPEC"), "DLVERIFY_SPEC is not set"))
  local second = open(assert(os.getenv("DLVERIFY_SPEC2"), "DLVERIFY_SPEC2 is not set"))
  results.buffers = { describe(first), describe(second) }
  results.clients = #all_clients()

  for _, client in ipairs(all_clients()) do
    vim.lsp.stop_client(client.id)
  end
  vim.wait(5000, function() return #all_clients() == 0 end, 10)
end

local ok, err = pcall(run)
if not ok then
  results.error = tostring(err)
end
write(ok and 0 or 1)
