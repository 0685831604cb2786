"""``tenure serve``: the HTTP gateway sidecar (see docs/http.md).

    from tenure.http.app import GatewayConfig, build_app
    app = build_app(GatewayConfig(backend_url="sqlite:///tmp/t.db"))
    # aiohttp.web.run_app(app) -- or run ``tenure serve``

Needs the ``serve`` extra (aiohttp, prometheus-client).

Import package ``tenure.http``, folder ``gateway/http/``.
"""
