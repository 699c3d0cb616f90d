--- Completion for a buffer the cato client attached to.
---
--- Neovim 0.12+: LSP inline completion (ghost text, `vim.lsp.inline_completion`).
--- Neovim 0.11: the server's `textDocument/completion` fallback item, through
--- `vim.lsp.completion` (omnifunc <C-x><C-o>, `vim.lsp.completion.get()`, autotrigger).
--- Neovim's completion inserts only the first word of a plain-text item's `textEdit`
--- (a popup-menu word is one line); a CATO item is a whole, often multi-line, completion,
--- so on accept (<C-y>) the rest of its text is inserted here.

local M = {}

--- Inline completion is used exactly when config.lua advertised it to the server.
local function uses_inline(client)
  local config = require('cato.config')
  return config.inline_enabled(config.options)
    and client.server_capabilities.inlineCompletionProvider ~= nil
end

--- The accepted item is a CATO completion whose full text is longer than what Neovim
--- inserted: put the whole text in, replacing the inserted word.
local function expand_accepted(bufnr)
  if vim.v.event.reason ~= 'accept' then
    return
  end
  local completed = vim.v.completed_item
  local item = vim.tbl_get(completed or {}, 'user_data', 'nvim', 'lsp', 'completion_item')
  if type(item) ~= 'table' or type(item.data) ~= 'table' or not item.data.cato
    or type(item.textEdit) ~= 'table' then
    return
  end
  local text = item.textEdit.newText:gsub('\r\n', '\n')
  local word = completed.word or ''
  if text == word then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  row = row - 1
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
  local start = col - #word
  -- Only when the buffer holds exactly what Neovim just inserted; otherwise leave it.
  if start < 0 or line:sub(start + 1, col) ~= word then
    return
  end
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, row, start, row, col, lines)
  local last = row + #lines - 1
  local last_col = (#lines == 1 and start or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { last + 1, last_col })
end

local function attach_items(client, bufnr, opts)
  vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = opts.autotrigger })
  local group = vim.api.nvim_create_augroup('cato.completion.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd('CompleteDone', {
    group = group,
    buffer = bufnr,
    desc = 'CATO: insert the whole completion on accept',
    callback = function()
      expand_accepted(bufnr)
    end,
  })
  if opts.keymaps.trigger then
    vim.keymap.set('i', opts.keymaps.trigger, function()
      vim.lsp.completion.get()
    end, { buffer = bufnr, desc = 'CATO: complete' })
  end
end

local function attach_inline(client, bufnr, opts)
  local ic = vim.lsp.inline_completion
  local ok, err = pcall(ic.enable, true, { bufnr = bufnr, client_id = client.id })
  if not ok then -- the filter's shape changed across 0.12 pre-releases
    ok, err = pcall(ic.enable, true, { bufnr = bufnr })
  end
  if not ok then
    vim.notify('cato: vim.lsp.inline_completion.enable failed: ' .. tostring(err),
      vim.log.levels.WARN)
    return
  end
  if opts.keymaps.accept then
    vim.keymap.set('i', opts.keymaps.accept, function()
      if not ic.get() then
        return opts.keymaps.accept -- nothing to accept: the key does what it always does
      end
    end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'CATO: accept' })
  end
  if opts.keymaps.trigger then
    vim.keymap.set('i', opts.keymaps.trigger, function()
      ic.get() -- with nothing shown, asks for an inline completion now
    end, { buffer = bufnr, desc = 'CATO: complete' })
  end
end

--- Set up completion for `bufnr` (LspAttach of the cato client).
function M.attach(client, bufnr)
  local opts = require('cato.config').options.completion
  if opts.enable == false then
    return
  end
  if uses_inline(client) then
    attach_inline(client, bufnr, opts)
  elseif vim.lsp.completion and vim.lsp.completion.enable then
    attach_items(client, bufnr, opts)
  end
end

--- Undo `attach` (LspDetach).
function M.detach(client, bufnr)
  pcall(vim.api.nvim_del_augroup_by_name, 'cato.completion.' .. bufnr)
  if vim.lsp.completion and vim.lsp.completion.enable then
    pcall(vim.lsp.completion.enable, false, client.id, bufnr)
  end
end

return M
