enum _StubPollwireHTTP {}
