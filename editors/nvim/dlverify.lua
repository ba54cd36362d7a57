-- dlverify for Neovim (0.8 or later; 0.7 through the fallbacks marked
-- below): `.dl` files get the filetype `dl`, and each one opened attaches
-- `dlverify lsp`, one server per project (the nearest folder above the file
-- with a .git or Cargo.toml, else the file's own folder). `:make` runs the
-- full check on the file into the quickfix list.
--
-- Use: copy this file to ~/.config/nvim/plugin/dlverify.lua, or from init.lua
--   dofile("/path/to/dlverify/editors/nvim/dlverify.lua")
-- Set vim.g.dlverify_path first to run a dlverify that is not on PATH.

vim.filetype.add({ extension = { dl = "dl" } })

local group = vim.api.nvim_create_augroup("dlverify", { clear = true })

-- Neovim 0.7 (Debian 12's package) reads vim.filetype.add only where
-- g:do_filetype_lua is set, and has neither vim.fs nor vim.lsp.start.
if vim.fn.has("nvim-0.8") == 0 then
  vim.api.nvim_create_autocmd({ "BufRead", "BufNewFile" }, {
    group = group,
    pattern = "*.dl",
    command = "setfiletype dl",
  })
end

-- 0.7: the nearest folder above `file` with a .git or Cargo.toml, else the
-- file's own folder (what vim.fs.find finds below).
local function root_of(file)
  local start = vim.fn.fnamemodify(file, ":p:h")
  local dir = start
  while true do
    for _, name in ipairs({ ".git", "Cargo.toml" }) do
      if vim.loop.fs_stat(dir .. "/" .. name) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      return start
    end
    dir = parent
  end
end

-- 0.7: the client started for each root, reused while it runs.
local clients = {}

vim.api.nvim_create_autocmd("FileType", {
  group = group,
  pattern = "dl",
  callback = function(args)
    local buf = args.buf
    local exe = vim.g.dlverify_path or "dlverify"
    local file = vim.api.nvim_buf_get_name(buf)

    vim.bo[buf].commentstring = "# %s"
    vim.bo[buf].comments = ":#"

    if vim.lsp.start then
      local marker = vim.fs.find({ ".git", "Cargo.toml" }, { upward = true, path = vim.fs.dirname(file) })[1]
      vim.lsp.start({
        name = "dlverify",
        cmd = { exe, "lsp" },
        root_dir = marker and vim.fs.dirname(marker) or vim.fs.dirname(file),
      }, { bufnr = buf })
    else
      local root = root_of(file)
      local id = clients[root]
      if not (id and vim.lsp.get_client_by_id(id)) then
        id = vim.lsp.start_client({ name = "dlverify", cmd = { exe, "lsp" }, root_dir = root })
        clients[root] = id
      end
      if id then
        vim.lsp.buf_attach_client(buf, id)
      end
    end

    -- `dlverify --format short` prints `file:line:col: error[code]: message`;
    -- a problem without a place (an unreadable file) is `file: error[...]`.
    vim.bo[buf].makeprg = vim.fn.shellescape(exe) .. " --format short %"
    vim.bo[buf].errorformat = "%f:%l:%c: %m,%f: %m"
  end,
})
