"""``make bench``: the gateway's hot paths against a bare aiohttp handler, in one run."""
