-- dlverify for Neovim (0.8 or later): `.dl` files get the filetype `dl`, and
-- each one opened attaches `dlverify lsp`, one server per project (the
-- nearest folder above the file with a .git or Cargo.toml, else the file's
-- own folder). `:make` runs the full check on the file into the quickfix list.
--
-- Use: copy this file to ~/.config/nvim/plugin/dlverify.lua, or from init.lua
--   dofile("/path/to/dlverify/editors/nvim/dlverify.lua")
-- Set vim.g.dlverify_path first to run a dlverify that is not on PATH.

vim.filetype.add({ extension = { dl = "dl" } })

local group = vim.api.nvim_create_augroup("dlverify", { clear = true })

vim.api.nvim_create_autocmd("FileType", {
  group = group,
  pattern = "dl",
  callback = function(args)
    local buf = args.buf
    local exe = vim.g.dlverify_path or "dlverify"
    local file = vim.api.nvim_buf_get_name(buf)
    local marker = vim.fs.find({ ".git", "Cargo.toml" }, { upward = true, path = vim.fs.dirname(file) })[1]

    vim.bo[buf].commentstring = "# %s"
    vim.bo[buf].comments = ":#"

    vim.lsp.start({
      name = "dlverify",
      cmd = { exe, "lsp" },
      root_dir = marker and vim.fs.dirname(marker) or vim.fs.dirname(file),
    }, { bufnr = buf })

    -- `dlverify --format short` prints `file:line:col: error[code]: message`;
    -- a problem without a place (an unreadable file) is `file: error[...]`.
    vim.bo[buf].makeprg = vim.fn.shellescape(exe) .. " --format short %"
    vim.bo[buf].errorformat = "%f:%l:%c: %m,%f: %m"
  end,
})
