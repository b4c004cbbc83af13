"""Protocol-agnostic helpers of the request path: clock, hints, cheap KServe body peeking."""
