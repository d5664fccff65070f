enum _StubPollwireSQLite {}
