"""Throwaway local MariaDB servers for the demo, the benchmarks and the test suite."""
