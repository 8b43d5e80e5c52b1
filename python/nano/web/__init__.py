"""The browser page: Nano's inference engine compiled to WASM, running in a Web Worker.

Serve it with ``python -m nano.web [--port P]``; the built WASM package lives in ``nano/web/pkg/``
(built by ``scripts/build_wasm.sh``).
"""
