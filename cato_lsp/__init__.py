"""cato-lsp: the CATO language server (inline completion, generate/translate/summarize
commands, SLA-aware tasks on the CATO backend). Wire contract: `cato_lsp.protocol`."""

__version__ = "0.1.0"
