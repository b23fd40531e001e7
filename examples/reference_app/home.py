"""``GET /``: a small HTML page whose inline script and style run only because of the nonce.

The page's ``<style>`` and ``<script>`` carry ``nonce="..."`` from
``request.state.csp_nonce``, the value the security headers middleware put in this
response's ``Content-Security-Policy``. Remove the attribute and the browser refuses
both: the status line stays red and says so.
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hardenkit reference app</title>
<style nonce="{nonce}">
  body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }}
  #status {{ padding: .5rem 1rem; border-radius: .25rem; background: #fdd; }}
  #status.ran {{ background: #dfd; }}
</style>
</head>
<body>
<h1>hardenkit reference app</h1>
<p id="status">The inline script did not run: the Content-Security-Policy blocked it.</p>
<p>Try <a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>,
<code>/api/slow?seconds=N</code> (a 504 past the request timeout) and
<code>/api/stream</code> (server-sent events that outlive it).</p>
<script nonce="{nonce}">
  const status = document.getElementById("status");
  status.textContent = "The inline script ran: it carries this response's CSP nonce.";
  status.className = "ran";
</script>
</body>
</html>
"""


async def index(request: Request) -> Response:
    nonce = getattr(request.state, "csp_nonce", "")
    return HTMLResponse(_PAGE.format(nonce=escape(nonce, quote=True)))


routes = [Route("/", index)]
