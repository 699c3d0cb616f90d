--- CATO for Neovim: cato-lsp (the CATO language server) as a `vim.lsp.config` entry,
--- commands, completion and a statusline component.
---
---   require("cato").setup({ backend = "http://127.0.0.1:8000", sla = { completion = 400 } })
---
--- The wire contract with the server is cato_lsp/protocol.py; see editors/neovim/README.md.

local M = {}

--- Configure and enable cato-lsp. Can be called again to change options: running
--- clients get the new settings at once (workspace/didChangeConfiguration).
---@param opts table? see cato.config.defaults
function M.setup(opts)
  if vim.fn.has('nvim-0.11') ~= 1 then
    vim.notify('cato: needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  local config = require('cato.config')
  config.options = config.resolve(opts)
  for _, problem in ipairs(select(2, config.settings(config.options))) do
    vim.notify('cato: ' .. problem, vim.log.levels.WARN)
  end
  local lsp_config = config.lsp_config(config.options)
  vim.lsp.config(config.name, lsp_config)
  vim.lsp.enable(config.name)
  -- Clients already running keep their process; give them the new settings.
  for _, client in ipairs(vim.lsp.get_clients({ name = config.name })) do
    client.settings = lsp_config.settings
    client:notify('workspace/didChangeConfiguration', { settings = lsp_config.settings })
  end
end

--- Statusline component, e.g. "CATO ok | completion 42ms <= 500ms"; "" without cato-lsp.
---   vim.o.statusline = "%f %= %{v:lua.require'cato'.statusline()}"
---@param bufnr integer? default: the current buffer
---@return string
function M.statusline(bufnr)
  return require('cato.status').statusline(bufnr)
end

--- The last `cato/status` of the cato client of `bufnr` (state, backend, emulated,
--- message, last_task, progress), or nil.
function M.status(bufnr)
  local status = require('cato.status')
  local client = status.client_for(bufnr or vim.api.nvim_get_current_buf())
  return client and status.get(client.id) or nil
end

--- Run a command from Lua. `range` is an LSP range (in the client's offset encoding) or
--- nil for the current line / cursor, like the user commands without a range.
---@param command 'generate'|'translate'|'summarize'
---@param opts { bufnr: integer?, range: lsp.Range?, target: string? }?
function M.run(command, opts)
  opts = opts or {}
  local commands = require('cato.commands')
  local name = 'cato.' .. command
  if opts.range then
    return commands.execute(name, opts)
  end
  return commands.from_user_command(name, { range = 0, args = opts.target or '' })
end

--- Cancel the commands running for a buffer (default: the current one).
function M.cancel(bufnr)
  return require('cato.commands').cancel(bufnr)
end

return M
