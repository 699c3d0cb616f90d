--- What cato-lsp last said about itself (`cato/status`, protocol.py `StatusParams`) and
--- about the command running now (`$/progress`), per client; and its statusline text.

local M = {}

--- client_id -> { state, backend, emulated, message, last_task, progress }
---@type table<integer, table>
local clients = {}

--- TTFT-critical kinds are judged by time to first token, the others end to end (the
--- backend's SLA metric per kind, DESIGN.md).
local TTFT_KINDS = { completion = true, generation = true }

local function entry(client_id)
  local e = clients[client_id]
  if not e then
    e = {}
    clients[client_id] = e
  end
  return e
end

local function changed(client_id)
  -- Statuslines are drawn lazily; ask for a redraw so the new state shows at once.
  pcall(vim.cmd.redrawstatus, { bang = true })
  pcall(vim.api.nvim_exec_autocmds, 'User', {
    pattern = 'CatoStatus',
    modeline = false,
    data = { client_id = client_id, status = clients[client_id] },
  })
end

--- Handler of the `cato/status` notification.
function M.on_notification(_, params, ctx)
  if type(params) ~= 'table' then
    return
  end
  local e = entry(ctx.client_id)
  e.state = params.state
  e.backend = params.backend
  e.emulated = params.emulated == true
  e.message = params.message ~= vim.NIL and params.message or nil
  -- A state change comes without a task: keep showing the last task's outcome.
  if type(params.lastTask) == 'table' then
    e.last_task = params.lastTask
  end
  changed(ctx.client_id)
end

--- LspProgress of a cato client: the command's title and token count while it runs.
function M.on_progress(client_id, value)
  if type(value) ~= 'table' then
    return
  end
  local e = entry(client_id)
  if value.kind == 'end' then
    e.progress = nil
  else
    local p = e.progress or {}
    p.title = value.title or p.title
    p.message = value.message
    e.progress = p
  end
  changed(client_id)
end

function M.forget(client_id)
  clients[client_id] = nil
end

function M.get(client_id)
  return clients[client_id]
end

local function nz(v)
  return v ~= nil and v ~= vim.NIL
end

local function ms(v)
  return ('%dms'):format(math.floor(v + 0.5))
end

--- "completion 12ms <= 500ms", "summarization 9100ms > 8000ms", "generation cached".
function M.format_task(t)
  local kind = tostring(t.kind or 'task')
  if nz(t.error) then
    return kind .. ' failed'
  end
  if t.cached == true then
    return kind .. ' cached'
  end
  local latency = TTFT_KINDS[kind] and t.ttft_ms or t.e2e_ms
  if not nz(latency) then
    return kind
  end
  if not nz(t.sla_ms) then
    return kind .. ' ' .. ms(latency)
  end
  local cmp = t.met == false and ' > ' or ' <= '
  return kind .. ' ' .. ms(latency) .. cmp .. ms(t.sla_ms)
end

--- The statusline text of one client's status.
function M.format(e)
  if not e or not e.state then
    return 'CATO starting'
  end
  local head = 'CATO ' .. e.state .. (e.emulated and ' (emulated)' or '')
  if e.progress and e.progress.title then
    local what = e.progress.title:gsub('^CATO: ', '')
    if nz(e.progress.message) then
      what = what .. ': ' .. e.progress.message
    end
    return head .. ' | ' .. what
  end
  if e.state ~= 'unreachable' and e.last_task then
    return head .. ' | ' .. M.format_task(e.last_task)
  end
  return head
end

--- The cato client of `bufnr`, else any running cato client.
function M.client_for(bufnr)
  local name = require('cato.config').name
  return vim.lsp.get_clients({ bufnr = bufnr, name = name })[1]
    or vim.lsp.get_clients({ name = name })[1]
end

--- Statusline component: "" when no cato-lsp runs.
---@param bufnr integer?
function M.statusline(bufnr)
  local client = M.client_for(bufnr or vim.api.nvim_get_current_buf())
  if not client then
    return ''
  end
  -- '%' starts a statusline item.
  return (M.format(clients[client.id]):gsub('%%', '%%%%'))
end

--- `:CatoStatus`: everything the server told us, as messages.
function M.show()
  local client = M.client_for(vim.api.nvim_get_current_buf())
  if not client then
    vim.api.nvim_echo({ { 'CATO: no cato-lsp client is running', 'WarningMsg' } }, true, {})
    return
  end
  local e = clients[client.id] or {}
  local lines = {
    M.format(e),
    ('  backend:   %s%s'):format(e.backend or '?',
      e.emulated and ' (EMULATED engine: load testing only)' or ''),
    ('  client:    %s (id %d, %s)'):format(client.name, client.id,
      client.offset_encoding or 'utf-16'),
  }
  if e.message then
    table.insert(lines, '  message:   ' .. e.message)
  end
  local t = e.last_task
  if t then
    local parts = {}
    for _, k in ipairs({ 'ttft_ms', 'e2e_ms', 'sla_ms' }) do
      if nz(t[k]) then
        table.insert(parts, ('%s %s'):format((k:gsub('_ms$', '')), ms(t[k])))
      end
    end
    local met = t.met == true and 'met' or t.met == false and 'MISSED' or 'n/a'
    table.insert(lines, ('  last task: %s %s; SLA %s%s%s'):format(t.kind, table.concat(parts, ', '),
      met, t.cached == true and ' (cached)' or '', nz(t.error) and (' error: ' .. t.error) or ''))
  end
  local hl = e.state == 'ok' and 'Normal' or 'WarningMsg'
  vim.api.nvim_echo({ { table.concat(lines, '\n'), hl } }, true, {})
end

return M
