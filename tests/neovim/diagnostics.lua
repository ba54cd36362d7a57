-- Run by tests/neovim.rs inside a headless Neovim (0.7 or later):
--
--   nvim --headless -u NONE -i NONE -n -c "luafile tests/neovim/diagnostics.lua"
--
-- with DLVERIFY_BIN (the dlverify binary), DLVERIFY_SPEC (a .dl file with a
-- mistake), DLVERIFY_FIX (a line that replaces the file's last line and
-- mends it) and DLVERIFY_OUT (where the results go, as JSON).
--
-- Opens the spec, starts `dlverify lsp` and attaches it to the buffer with
-- the APIs Neovim 0.7 has (vim.lsp.start_client and buf_attach_client;
-- vim.lsp.start is 0.8+), waits for the diagnostics, then replaces the last
-- line in the buffer (not on disk) and waits for them to clear. Writes what
-- Neovim holds at each stage, as vim.diagnostic.get gives it, and every
-- publishDiagnostics the server sent. Always ends Neovim: an error is
-- written to the results too, and Neovim exits with status 1.

local PATIENCE = 30000 -- ms to wait at each stage
local out_path = os.getenv("DLVERIFY_OUT")
local results = { published = {} }

local function version()
  local v = vim.version()
  return string.format("%d.%d.%d", v.major, v.minor, v.patch)
end

-- A diagnostic as vim.diagnostic.get gives it, reduced to plain fields.
-- Neovim 0.7 puts the server's code both at the top level and under
-- user_data.lsp.code (deprecated there); either is taken.
local function plain(d)
  local lsp = d.user_data and d.user_data.lsp or {}
  return {
    lnum = d.lnum,
    col = d.col,
    end_lnum = d.end_lnum,
    end_col = d.end_col,
    severity = d.severity,
    message = d.message,
    source = d.source,
    code = d.code or lsp.code,
  }
end

local function diagnostics(buf)
  return vim.tbl_map(plain, vim.diagnostic.get(buf))
end

local function write(code)
  local file = out_path and io.open(out_path, "w")
  if file then
    file:write(vim.fn.json_encode(results))
    file:close()
  else
    code = 2
  end
  -- cquit sets Neovim's exit status; qa! exits 0.
  vim.cmd(code == 0 and "qa!" or "cquit " .. code)
end

local function run()
  results.nvim = version()
  local bin = assert(os.getenv("DLVERIFY_BIN"), "DLVERIFY_BIN is not set")
  local spec = assert(os.getenv("DLVERIFY_SPEC"), "DLVERIFY_SPEC is not set")
  local fix = assert(os.getenv("DLVERIFY_FIX"), "DLVERIFY_FIX is not set")

  vim.cmd("edit " .. vim.fn.fnameescape(spec))
  local buf = vim.api.nvim_get_current_buf()

  local client_id = vim.lsp.start_client({
    name = "dlverify",
    cmd = { bin, "lsp" },
    root_dir = vim.fn.fnamemodify(spec, ":p:h"),
    handlers = {
      -- Every publish as it came (the version says which text it is for),
      -- then Neovim's own handler, which fills vim.diagnostic.
      ["textDocument/publishDiagnostics"] = function(err, result, ctx, config)
        table.insert(results.published, {
          version = result.version or vim.NIL,
          count = #result.diagnostics,
        })
        return vim.lsp.handlers["textDocument/publishDiagnostics"](err, result, ctx, config)
      end,
    },
  })
  assert(client_id, "vim.lsp.start_client did not start dlverify lsp")
  assert(vim.lsp.buf_attach_client(buf, client_id), "vim.lsp.buf_attach_client failed")
  -- Client objects' methods moved from `client.f()` to `client:f()` in
  -- later versions; the vim.lsp functions below work in every one.
  local function running()
    return vim.lsp.get_client_by_id(client_id) ~= nil
  end

  -- Stage 1: the file as it is on disk.
  if not vim.wait(PATIENCE, function() return #vim.diagnostic.get(buf) > 0 end, 10) then
    error("no diagnostics within " .. PATIENCE .. " ms")
  end
  results.broken = diagnostics(buf)
  results.offset_encoding = vim.lsp.get_client_by_id(client_id).offset_encoding

  -- Stage 2: the last line replaced in the buffer only; Neovim sends
  -- didChange. Neovim also clears a client's diagnostics when the client
  -- exits, so an empty list alone proves nothing: the server must have
  -- published an empty list for the buffer's new version, and still run.
  local last = vim.api.nvim_buf_line_count(buf)
  vim.api.nvim_buf_set_lines(buf, last - 1, last, true, { fix })
  -- The version Neovim sends in didChange is the buffer's changedtick.
  local changed = vim.api.nvim_buf_get_changedtick(buf)
  results.fixed_version = changed
  local function cleared()
    local p = results.published[#results.published]
    return p ~= nil and p.version == changed and #vim.diagnostic.get(buf) == 0
  end
  if not vim.wait(PATIENCE, cleared, 10) then
    results.fixed = diagnostics(buf)
    error("the diagnostics did not clear within " .. PATIENCE .. " ms of the fix")
  end
  results.fixed = diagnostics(buf)
  results.client_running = running()

  vim.lsp.stop_client(client_id)
  vim.wait(5000, function() return not running() end, 10)
end

local ok, err = pcall(run)
if not ok then
  results.error = tostring(err)
end
write(ok and 0 or 1)
