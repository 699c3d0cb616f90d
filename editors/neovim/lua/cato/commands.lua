--- The commands `cato.generate`, `cato.translate`, `cato.summarize` (protocol.py) run
--- from Neovim: an LSP range built from the command's range or visual selection, then
--- `workspace/executeCommand` on the cato client. The server streams `$/progress` and
--- ends with `workspace/applyEdit`, which Neovim applies itself: nothing is edited here.

local M = {}

--- `:CatoTranslate` completion: the server's COMMON_TARGET_LANGUAGES first, then others.
M.languages = {
  'python', 'typescript', 'java', 'go', 'rust', 'cpp',
  'c', 'csharp', 'javascript', 'kotlin', 'swift', 'ruby', 'php', 'scala', 'lua', 'haskell',
  'elixir', 'dart', 'zig', 'julia', 'bash',
}

--- Requests in flight per buffer (for `:CatoCancel`): bufnr -> { [request_id] = client_id }.
---@type table<integer, table<integer, integer>>
local inflight = {}

local KIND = {
  ['cato.generate'] = 'generation',
  ['cato.translate'] = 'translation',
  ['cato.summarize'] = 'summarization',
}

local function resolve(bufnr)
  return (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
end

local function notify(msg, level)
  vim.notify('CATO: ' .. msg, level or vim.log.levels.INFO)
end

--- LSP character of byte column `col` of `line` in `encoding`.
local function character(line, col, encoding)
  col = math.min(col, #line)
  if encoding == 'utf-8' then
    return col
  end
  return vim.str_utfindex(line, encoding, col, false)
end

local function get_line(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

--- The LSP range a user command means.
--- * no range: the empty range at the cursor (generate reads the comment on that line;
---   translate and summarize take the whole cursor line instead, see `whole_line`);
--- * the range of the last characterwise visual selection, when the command range is
---   that selection's lines (`:'<,'>` after `v`);
--- * otherwise whole lines line1..line2.
---@param bufnr integer
---@param cmd { range: integer, line1: integer, line2: integer }
---@param encoding string the client's offset encoding
---@param whole_line boolean? an empty range means the cursor's whole line
---@return lsp.Range
function M.range(bufnr, cmd, encoding, whole_line)
  if cmd.range == 0 then
    local row, col = unpack(vim.api.nvim_win_get_cursor(0))
    local line = get_line(bufnr, row - 1)
    if whole_line then
      return {
        start = { line = row - 1, character = 0 },
        ['end'] = { line = row - 1, character = character(line, #line, encoding) },
      }
    end
    local pos = { line = row - 1, character = character(line, col, encoding) }
    return { start = pos, ['end'] = vim.deepcopy(pos) }
  end
  local vs = vim.api.nvim_buf_get_mark(bufnr, '<')
  local ve = vim.api.nvim_buf_get_mark(bufnr, '>')
  if vim.fn.visualmode() == 'v' and vs[1] == cmd.line1 and ve[1] == cmd.line2 then
    local first, last = get_line(bufnr, vs[1] - 1), get_line(bufnr, ve[1] - 1)
    local end_col = ve[2]
    if vim.o.selection ~= 'exclusive' and end_col < #last then
      -- '> marks the first byte of the last selected character, which is included.
      end_col = end_col + #vim.fn.strcharpart(last:sub(end_col + 1), 0, 1)
    end
    return {
      start = { line = vs[1] - 1, character = character(first, vs[2], encoding) },
      ['end'] = { line = ve[1] - 1, character = character(last, end_col, encoding) },
    }
  end
  local last = get_line(bufnr, cmd.line2 - 1)
  return {
    start = { line = cmd.line1 - 1, character = 0 },
    ['end'] = { line = cmd.line2 - 1, character = character(last, #last, encoding) },
  }
end

local function track(bufnr, request_id, client_id)
  inflight[bufnr] = inflight[bufnr] or {}
  inflight[bufnr][request_id] = client_id
end

local function untrack(bufnr, request_id)
  local reqs = inflight[bufnr]
  if reqs then
    reqs[request_id] = nil
    if next(reqs) == nil then
      inflight[bufnr] = nil
    end
  end
end

local function done(command, bufnr, result, err)
  vim.api.nvim_exec_autocmds('User', {
    pattern = 'CatoCommandDone',
    modeline = false,
    data = { command = command, bufnr = bufnr, result = result, error = err },
  })
end

--- What the user is told when a command ends (protocol.py `CommandResult`).
local function report(command, err, result)
  local kind = KIND[command] or command
  if err then
    notify(('%s failed: %s'):format(kind, err.message or tostring(err)), vim.log.levels.ERROR)
  elseif result == nil or result == vim.NIL then
    notify(kind .. ' cancelled')
  elseif result.applied == false then
    notify(kind .. ': the buffer changed while the model worked; nothing was inserted',
      vim.log.levels.WARN)
  else
    local sla = result.cached and 'cached'
      or result.sla_met == true and 'SLA met'
      or result.sla_met == false and 'SLA missed'
      or nil
    local e2e = type(result.e2e_ms) == 'number' and ('%d ms'):format(result.e2e_ms) or nil
    local details = table.concat(vim.tbl_filter(function(x)
      return x ~= nil
    end, { e2e, sla }), ', ')
    notify(kind .. ' inserted' .. (details ~= '' and (' (' .. details .. ')') or ''))
  end
end

--- Run a cato command on `bufnr` over `range`.
---@param command 'cato.generate'|'cato.translate'|'cato.summarize'
---@param opts { bufnr: integer?, range: lsp.Range|fun(encoding: string): lsp.Range, target: string? }
---@return integer? request_id
function M.execute(command, opts)
  local bufnr = resolve(opts.bufnr)
  local name = require('cato.config').name
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = name })[1]
  if not client then
    notify(('no cato-lsp attached to this buffer (filetype %q: is it in `filetypes`? '
      .. ':checkhealth cato)'):format(vim.bo[bufnr].filetype), vim.log.levels.ERROR)
    return nil
  end
  local encoding = client.offset_encoding or 'utf-16'
  local range = type(opts.range) == 'function' and opts.range(encoding) or opts.range
  local arguments = { vim.uri_from_bufnr(bufnr), range }
  if opts.target and opts.target ~= '' then
    table.insert(arguments, opts.target)
  end
  local request_id
  local ok
  ok, request_id = client:request('workspace/executeCommand',
    { command = command, arguments = arguments },
    function(err, result)
      untrack(bufnr, request_id)
      report(command, err, result)
      done(command, bufnr, result, err)
    end, bufnr)
  if not ok then
    notify('cato-lsp is not running', vim.log.levels.ERROR)
    return nil
  end
  track(bufnr, request_id, client.id)
  return request_id
end

--- Cancel the commands running for `bufnr` ($/cancelRequest: the backend task is aborted).
---@return integer how many were cancelled
function M.cancel(bufnr)
  bufnr = resolve(bufnr)
  local n = 0
  for request_id, client_id in pairs(inflight[bufnr] or {}) do
    local client = vim.lsp.get_client_by_id(client_id)
    if client then
      client:cancel_request(request_id)
      n = n + 1
    end
  end
  inflight[bufnr] = nil
  return n
end

--- The handler of `:CatoGenerate`, `:CatoTranslate`, `:CatoSummarize`.
---@param command string
---@param cmd table the user command's arguments (nvim_create_user_command)
function M.from_user_command(command, cmd)
  local bufnr = vim.api.nvim_get_current_buf()
  -- Translate and summarize need code to work on: without a range, the cursor's line.
  local whole_line = command ~= 'cato.generate'
  return M.execute(command, {
    bufnr = bufnr,
    range = function(encoding)
      return M.range(bufnr, cmd, encoding, whole_line)
    end,
    target = command == 'cato.translate' and vim.trim(cmd.args or '') or nil,
  })
end

--- Completion of `:CatoTranslate {language}`.
function M.complete_language(arglead)
  return vim.tbl_filter(function(lang)
    return vim.startswith(lang, arglead:lower())
  end, M.languages)
end

return M
