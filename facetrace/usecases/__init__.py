"""The use-cases of a server, below the API and the web pages and above the workflow: searches
with their case reference and purpose, sign-in and sessions, user administration, video search,
photos of reports and cases, background jobs; with the audit and authorisation rules they share.

The API routes and the web pages both call these functions (never each other's routes); nothing
here reads HTTP. The composition root (:mod:`facetrace.server`) builds the :class:`Service`.
"""
