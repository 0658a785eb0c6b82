"""Helpers shared by the test suites: real emulators, the runtime as a process, records."""
