-- Drives the cato plugin in headless Neovim the way a user would (keys through the
-- typeahead, Ex commands on visual selections) against a real cato-lsp and backend, and
-- writes what it saw to a JSON file that test_neovim_e2e.py asserts on.
--
-- Run as: nvim --headless --clean --cmd "set rtp^=<plugin>" -c "luafile nvim_e2e.lua"
-- with $CATO_E2E naming a JSON file of settings. The steps run in a coroutine resumed by
-- timers, so that between steps Neovim's main loop runs: typeahead, LSP messages,
-- scheduled handlers. Every wait is bounded, and a deadline quits Neovim whatever happens.

local uv = vim.uv
local cfg = vim.json.decode(table.concat(vim.fn.readfile(vim.env.CATO_E2E), '\n'))

local results = { steps = {}, notifications = {}, questions = {}, done = {} }

local function save()
  vim.fn.writefile({ vim.json.encode(results) }, cfg.results)
end

local function quit(code)
  save()
  vim.cmd(code == 0 and 'qall!' or ('cquit ' .. code))
end

local function fail(msg)
  results.error = msg
  quit(1)
end

local deadline = assert(uv.new_timer())
deadline:start(cfg.deadline_ms, 0, vim.schedule_wrap(function()
  fail(('deadline of %d ms passed'):format(cfg.deadline_ms))
end))

-- What the user would have been told.
vim.notify = function(msg, level)
  table.insert(results.notifications, { msg = tostring(msg), level = level })
end
-- The language question of :CatoTranslate without a language (window/showMessageRequest
-- reaches vim.ui.select): answer like a user picking an entry.
vim.ui.select = function(items, opts, on_choice)
  local titles = vim.tbl_map(function(i)
    return opts.format_item and opts.format_item(i) or tostring(i)
  end, items)
  table.insert(results.questions, { prompt = opts.prompt, items = titles })
  for i, title in ipairs(titles) do
    if title == cfg.answer then
      return on_choice(items[i], i)
    end
  end
  on_choice(nil, nil)
end

vim.api.nvim_create_autocmd('User', {
  pattern = 'CatoCommandDone',
  callback = function(args)
    local d = args.data
    table.insert(results.done, {
      command = d.command,
      result = d.result ~= vim.NIL and d.result or nil,
      error = d.error and (d.error.message or tostring(d.error)) or nil,
    })
  end,
})

require('cato').setup({
  cmd = cfg.lsp_cmd,
  cache_dir = cfg.cache_dir,
  backend = cfg.backend,
  sla = { completion = 2000, generation = 3000 }, -- generous: a busy CI machine
  max_tokens = { completion = 8, generation = 16, translation = 24, summarization = 16 },
  settings = { debounce = { enabled = false }, log_level = 'debug' },
  -- The completion-item fallback on every Neovim (0.12 would otherwise use inline).
  completion = { inline = false },
})
vim.o.completeopt = 'menuone,noinsert'
vim.o.statusline = "%{v:lua.require'cato'.statusline()}"

local co

local function resume()
  local ok, err = coroutine.resume(co)
  if not ok then
    fail(debug.traceback(co, tostring(err)))
  elseif coroutine.status(co) == 'dead' then
    quit(0)
  end
end

local function sleep(ms)
  vim.defer_fn(resume, ms)
  coroutine.yield()
end

local function wait_for(what, predicate, timeout_ms)
  local t0 = uv.now()
  while true do
    local ok, value = pcall(predicate)
    if ok and value then
      return value
    end
    if uv.now() - t0 > (timeout_ms or cfg.step_timeout_ms) then
      error(('timed out waiting for %s'):format(what), 0)
    end
    sleep(20)
  end
end

local function feed(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), 'n', false)
end

local function statusline()
  return vim.api.nvim_eval_statusline(vim.o.statusline, {}).str
end

local function snapshot(name, extra)
  local step = vim.tbl_extend('force', {
    name = name,
    lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),
    statusline = statusline(),
    mode = vim.api.nvim_get_mode().mode,
  }, extra or {})
  table.insert(results.steps, step)
  save()
end

--- Task outcomes seen in `cato/status` so far (the plugin's User CatoStatus event).
local tasks_seen = {}
vim.api.nvim_create_autocmd('User', {
  pattern = 'CatoStatus',
  callback = function(args)
    local t = args.data.status and args.data.status.last_task
    if t and t ~= tasks_seen[#tasks_seen] then
      table.insert(tasks_seen, t)
    end
  end,
})

--- Wait for the status notification of a task of `kind` that came after `n` tasks.
local function wait_task(kind, n)
  wait_for('the cato/status of a ' .. kind, function()
    for i = n + 1, #tasks_seen do
      if tasks_seen[i].kind == kind then
        return true
      end
    end
  end)
end

--- Run an Ex command line typed by the user; wait for its CatoCommandDone and for the
--- status notification of its task.
local function command(keys, kind)
  local n, tasks = #results.done, #tasks_seen
  feed(keys)
  wait_for('the command of ' .. keys, function()
    return #results.done > n
  end)
  wait_task(kind, tasks)
end

co = coroutine.create(function()
  vim.cmd.edit(vim.fn.fnameescape(cfg.file))
  local client = wait_for('cato-lsp to attach', function()
    return vim.lsp.get_clients({ bufnr = 0, name = 'cato' })[1]
  end)
  wait_for('the first cato/status', function()
    return (require('cato').status() or {}).state == 'ok'
  end)
  local config = require('cato.config')
  results.client = {
    nvim = tostring(vim.version()),
    offset_encoding = client.offset_encoding,
    omnifunc = vim.bo.omnifunc,
    inline = config.inline_enabled(config.options),
  }
  snapshot('attached')

  -- 1. Completion (0.11: the textDocument/completion fallback through omnifunc).
  vim.api.nvim_win_set_cursor(0, { cfg.complete_line, 0 })
  local tasks = #tasks_seen
  feed('A<C-x><C-o>')
  wait_for('the completion menu', function()
    return vim.fn.pumvisible() == 1
  end)
  local info = vim.fn.complete_info({ 'items', 'selected' })
  local items = vim.tbl_map(function(it)
    return { word = it.word, abbr = it.abbr, menu = it.menu }
  end, info.items)
  feed('<C-y>')
  wait_for('the completion to be inserted', function()
    return vim.fn.pumvisible() == 0 and #vim.api.nvim_buf_get_lines(0, 0, -1, false) > cfg.lines
  end)
  feed('<Esc>')
  wait_for('normal mode', function()
    return vim.api.nvim_get_mode().mode == 'n'
  end)
  wait_task('completion', tasks)
  snapshot('completion', { items = items })

  -- 2. Generate from the comment on the cursor line (no range: an empty LSP range).
  vim.api.nvim_win_set_cursor(0, { cfg.generate_line, 0 })
  command(':CatoGenerate<CR>', 'generation')
  snapshot('generate')

  -- 3. Translate a linewise visual selection to rust.
  command(cfg.translate_keys, 'translation')
  snapshot('translate')

  -- 4. Summarize a characterwise visual selection.
  command(cfg.summarize_keys, 'summarization')
  snapshot('summarize', { status_text = vim.api.nvim_exec2('CatoStatus', { output = true }).output })

  -- 5. Translate without a language: the server asks, vim.ui.select answers.
  command(cfg.ask_keys, 'translation')
  snapshot('translate_asked')

  -- 6. Ranges in each offset encoding, from a real characterwise selection of 'é😀'.
  local scratch = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(scratch, 0, -1, false, { cfg.range_line })
  vim.api.nvim_win_set_buf(0, scratch)
  vim.api.nvim_win_set_cursor(0, { 1, cfg.range_col })
  feed('vl<Esc>')
  wait_for('the selection marks', function()
    return vim.api.nvim_get_mode().mode == 'n' and vim.fn.visualmode() == 'v'
      and vim.api.nvim_buf_get_mark(scratch, '>')[2] > cfg.range_col
  end)
  local commands = require('cato.commands')
  results.ranges = {}
  for _, enc in ipairs({ 'utf-8', 'utf-16', 'utf-32' }) do
    results.ranges[enc] = {
      selection = commands.range(scratch, { range = 2, line1 = 1, line2 = 1 }, enc),
      line = commands.range(scratch, { range = 0 }, enc, true),
    }
  end
  save()
end)

vim.schedule(resume)
