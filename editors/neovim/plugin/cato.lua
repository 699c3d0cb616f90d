-- User commands and autocommands of cato (the LSP itself is configured by
-- require("cato").setup()). Modules load on first use, so startup stays cheap.
if vim.g.loaded_cato or vim.fn.has('nvim-0.11') ~= 1 then
  return
end
vim.g.loaded_cato = true

local function run(command)
  return function(cmd)
    require('cato.commands').from_user_command(command, cmd)
  end
end

vim.api.nvim_create_user_command('CatoGenerate', run('cato.generate'), {
  range = true,
  desc = 'CATO: generate code from the selection or the comment on the cursor line',
})
vim.api.nvim_create_user_command('CatoTranslate', run('cato.translate'), {
  range = true,
  nargs = '?',
  complete = function(arglead)
    return require('cato.commands').complete_language(arglead)
  end,
  desc = 'CATO: translate the selection to {language} (asks when omitted)',
})
vim.api.nvim_create_user_command('CatoSummarize', run('cato.summarize'), {
  range = true,
  desc = 'CATO: summarize the selection as comments above it',
})
vim.api.nvim_create_user_command('CatoCancel', function()
  local n = require('cato.commands').cancel(0)
  vim.notify(('CATO: %d command(s) cancelled'):format(n))
end, { desc = 'CATO: cancel the commands running for this buffer' })
vim.api.nvim_create_user_command('CatoStatus', function()
  require('cato.status').show()
end, { desc = 'CATO: backend state and the last task against its SLA' })

local group = vim.api.nvim_create_augroup('cato', { clear = true })

--- The cato client of an Lsp* autocommand, or nil (other servers pay one lookup).
local function cato_client(args)
  local client = vim.lsp.get_client_by_id(args.data and args.data.client_id or -1)
  if client and client.name == require('cato.config').name then
    return client
  end
end

vim.api.nvim_create_autocmd('LspAttach', {
  group = group,
  desc = 'CATO: completion in the attached buffer',
  callback = function(args)
    local client = cato_client(args)
    if client then
      require('cato.completion').attach(client, args.buf)
    end
  end,
})
vim.api.nvim_create_autocmd('LspDetach', {
  group = group,
  callback = function(args)
    local client = cato_client(args)
    if client then
      require('cato.completion').detach(client, args.buf)
      -- The last buffer gone: the client stops; forget its status.
      if vim.tbl_count(client.attached_buffers) <= 1 then
        require('cato.status').forget(client.id)
      end
    end
  end,
})
vim.api.nvim_create_autocmd('LspProgress', {
  group = group,
  desc = 'CATO: a running command in the statusline',
  callback = function(args)
    local client = cato_client(args)
    if client then
      require('cato.status').on_progress(client.id, vim.tbl_get(args.data, 'params', 'value'))
    end
  end,
})
