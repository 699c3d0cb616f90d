--- :checkhealth cato

local M = {}

function M.check()
  local health = vim.health
  local config = require('cato.config')
  health.start('cato')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11+ is needed')
  end
  health.info(config.inline_enabled(config.options)
    and 'completions: LSP inline completion (vim.lsp.inline_completion)'
    or 'completions: completion items (<C-x><C-o> / vim.lsp.completion)')
  local cmd = config.options.cmd
  local exe = type(cmd) == 'table' and cmd[1] or nil
  if exe and vim.fn.executable(exe) == 1 then
    health.ok(('server: %s (%s)'):format(table.concat(cmd, ' '), vim.fn.exepath(exe)))
  else
    health.error(('server not executable: %s'):format(vim.inspect(cmd)),
      { 'install the backend (repository README), or set cmd = { "/path/to/cato-lsp" }' })
  end
  if not vim.lsp.is_enabled or not vim.lsp.is_enabled(config.name) then
    health.warn('cato-lsp is not enabled: call require("cato").setup()')
  end
  local clients = vim.lsp.get_clients({ name = config.name })
  if #clients == 0 then
    health.info('no cato-lsp client is running (open a file of a configured filetype)')
  end
  for _, client in ipairs(clients) do
    local s = require('cato.status').get(client.id)
    local text = require('cato.status').format(s)
    if s and s.state == 'ok' then
      health.ok(('client %d: %s, backend %s'):format(client.id, text, s.backend))
    elseif s and s.state then
      health.warn(('client %d: %s, backend %s%s'):format(client.id, text, s.backend or '?',
        s.message and (': ' .. s.message) or ''))
    else
      health.info(('client %d: no status yet'):format(client.id))
    end
  end
end

return M
