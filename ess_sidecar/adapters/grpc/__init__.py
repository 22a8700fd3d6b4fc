"""The gRPC adapter: servicer, proto<->domain mapping, status codes, server."""
