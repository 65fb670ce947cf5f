"""The HTTP side: the server and its connections, the hit path, routes, middleware, forwarding."""
