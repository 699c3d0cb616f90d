--- Options of the plugin, and their translation into cato-lsp's settings and a
--- `vim.lsp.config` table.
---
--- The settings schema is cato_lsp/protocol.py's `Settings` (camelCase keys). The server
--- rejects a settings object with an unknown key AS A WHOLE (keeping the previous one), so
--- a typo here would silently undo every other setting: unknown keys are reported and
--- dropped on this side instead.

local M = {}

--- The name of the client and of the `vim.lsp.config` entry.
M.name = 'cato'

--- The server's notification (protocol.py STATUS_NOTIFICATION).
M.status_method = 'cato/status'

--- Task kinds, which are also the keys of `sla` and `maxTokens`.
M.kinds = { 'completion', 'generation', 'translation', 'summarization' }

--- Top-level keys of protocol.py `Settings`.
local SETTING_KEYS = {
  backendUrl = true,
  token = true,
  model = true,
  logLevel = true,
  sla = true,
  maxTokens = true,
  debounce = true,
  context = true,
  cache = true,
  timeouts = true,
  health = true,
}

--- Neovim 0.12 ships `vim.lsp.inline_completion` (LSP 3.18 ghost text); 0.11 does not.
function M.has_inline_completion()
  local ok, ic = pcall(function()
    return vim.lsp.inline_completion
  end)
  return ok and type(ic) == 'table' and type(ic.enable) == 'function'
end

--- Whether completions come as LSP inline completion (else as completion items).
function M.inline_enabled(opts)
  return opts.completion.enable ~= false and opts.completion.inline ~= false
    and M.has_inline_completion()
end

---@class cato.Options
M.defaults = {
  --- How to start the server: cato-lsp over stdio (`--backend`/`--token` are better set
  --- as `backend`/`token`, which the editor can change without a restart).
  cmd = { 'cato-lsp' },
  --- Extra environment for the server process (e.g. { CATO_TOKEN = ... }).
  cmd_env = nil,
  --- The server's persistent result cache (`--cache-dir`); nil = its default.
  cache_dir = nil,
  --- Shortcuts for the most used settings (nil = the server's default).
  backend = nil, -- backendUrl, e.g. "http://127.0.0.1:8000"
  token = nil, -- bearer token
  model = nil,
  log_level = nil, -- "error" | "info" | "debug"
  sla = {}, -- per kind, in ms: { completion = 400, translation = 15000 }
  max_tokens = {}, -- per kind
  --- Any other setting of protocol.py, camelCase or snake_case: { debounce = { min_ms = 20 } }.
  settings = {},
  filetypes = {
    'python', 'lua', 'rust', 'go', 'c', 'cpp', 'java', 'kotlin', 'scala', 'cs',
    'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'ruby', 'php',
    'swift', 'sh', 'bash', 'zsh', 'sql', 'haskell', 'ocaml', 'elixir', 'erlang', 'r',
    'julia', 'perl', 'dart', 'zig', 'vim', 'html', 'css', 'yaml', 'toml', 'json', 'markdown',
  },
  completion = {
    enable = true,
    --- Use LSP inline completion (ghost text) where Neovim has it (0.12+); otherwise
    --- completion items (omnifunc / vim.lsp.completion). The server answers only one of
    --- the two, depending on what the client advertises.
    inline = true,
    --- vim.lsp.completion's autotrigger (0.11 items path).
    autotrigger = false,
    keymaps = {
      trigger = nil, -- insert-mode key: ask for a completion now (e.g. "<C-Space>")
      accept = nil, -- insert-mode key: accept the ghost text (0.12 inline path)
    },
  },
}

--- Options as set by the last `setup()` (defaults before it).
M.options = vim.deepcopy(M.defaults)

--- snake_case -> camelCase ("max_tokens" -> "maxTokens"; camelCase stays as it is).
local function camel(key)
  return (key:gsub('_(%l)', string.upper))
end

--- A copy of `t` with every string key camelCased (lists are copied as they are).
local function camel_keys(t)
  if type(t) ~= 'table' or vim.islist(t) then
    return t
  end
  local out = {}
  for k, v in pairs(t) do
    out[type(k) == 'string' and camel(k) or k] = camel_keys(v)
  end
  return out
end

--- Drop empty tables: Lua cannot tell `{}` from `[]`, and a JSON `[]` where the server
--- expects an object fails validation.
local function prune(t)
  for k, v in pairs(t) do
    if type(v) == 'table' then
      prune(v)
      if next(v) == nil then
        t[k] = nil
      end
    end
  end
  return t
end

--- Settings for cato-lsp (`initializationOptions` and the `cato` section of
--- `workspace/configuration`) from the plugin's options.
---@param opts cato.Options
---@return table settings camelCase, only the keys that were set
---@return string[] problems what was dropped, and why
function M.settings(opts)
  local problems = {}
  local function warn(msg)
    table.insert(problems, msg)
  end
  local s = camel_keys(vim.deepcopy(opts.settings or {}))
  local shortcuts = {
    backendUrl = opts.backend,
    token = opts.token,
    model = opts.model,
    logLevel = opts.log_level,
  }
  for k, v in pairs(shortcuts) do
    s[k] = v
  end
  for key, value in pairs({ sla = opts.sla, maxTokens = opts.max_tokens }) do
    s[key] = vim.tbl_extend('force', s[key] or {}, camel_keys(value or {}))
    for kind, v in pairs(s[key]) do
      if not vim.list_contains(M.kinds, kind) or type(v) ~= 'number' then
        warn(('%s.%s ignored: keys are %s, values numbers'):format(key, tostring(kind),
          table.concat(M.kinds, '/')))
        s[key][kind] = nil
      end
    end
  end
  for k in pairs(s) do
    if not SETTING_KEYS[k] then
      warn(('setting %q ignored: not a cato-lsp setting (see cato_lsp/protocol.py)'):format(k))
      s[k] = nil
    end
  end
  return prune(s), problems
end

--- An empty settings table must travel as a JSON object.
local function object(t)
  return next(t) == nil and vim.empty_dict() or t
end

--- The `vim.lsp.config` entry for cato-lsp.
---@param opts cato.Options
---@return vim.lsp.Config
function M.lsp_config(opts)
  local cmd = vim.deepcopy(opts.cmd)
  if opts.cache_dir then
    vim.list_extend(cmd, { '--cache-dir', vim.fs.normalize(opts.cache_dir) })
  end
  local settings = M.settings(opts) -- problems: reported once, by setup()
  local inline = M.inline_enabled(opts)
  return {
    cmd = cmd,
    cmd_env = opts.cmd_env,
    filetypes = opts.filetypes,
    -- No root markers: completions need no project, so one server serves every file.
    init_options = object(vim.deepcopy(settings)),
    -- The default workspace/configuration handler answers section "cato" from here.
    settings = { cato = object(settings) },
    handlers = {
      [M.status_method] = function(...)
        return require('cato.status').on_notification(...)
      end,
    },
    before_init = function(params)
      -- The server answers textDocument/completion only to clients WITHOUT inline
      -- completion (so nobody sees a completion twice): advertise inline completion
      -- exactly when this Neovim will display it.
      local td = params.capabilities.textDocument
      if td then
        td.inlineCompletion = inline and { dynamicRegistration = false } or nil
      end
    end,
  }
end

--- Merge user options over the defaults (lists such as `cmd` and `filetypes` are
--- replaced, not merged).
---@param user table?
---@return cato.Options
function M.resolve(user)
  vim.validate('opts', user, 'table', true)
  local opts = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), user or {})
  if user and user.cmd then
    opts.cmd = vim.deepcopy(user.cmd)
  end
  if user and user.filetypes then
    opts.filetypes = vim.deepcopy(user.filetypes)
  end
  if type(opts.cmd) == 'string' then
    opts.cmd = { opts.cmd }
  end
  if type(opts.completion) == 'boolean' then
    opts.completion = vim.tbl_extend('force', vim.deepcopy(M.defaults.completion),
      { enable = opts.completion })
  end
  return opts
end

return M
