-- Neovim 0.11+ reads lsp/<name>.lua from the runtimepath: with this file,
-- `vim.lsp.enable("cato")` works with the defaults even without require("cato").setup().
local config = require('cato.config')
return config.lsp_config(config.options)
