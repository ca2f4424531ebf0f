"""One module per measured property; each `run(sizes, ...)` returns a JSON-able dict."""
