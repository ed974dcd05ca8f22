"""What the API and the web pages share over HTTP, below both of them: the request dependencies
(who is calling, role checks, CSRF, uploads, the search rate limit) with their typed aliases, and
the security headers of every response. The rules themselves are the use-cases'
(:mod:`facetrace.usecases`); this package only reads them off requests."""
