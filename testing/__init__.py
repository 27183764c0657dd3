"""The test harness (throwaway nspawn hosts): used by the tests, the benchmarks and this
checkout's `invoke testhost-up/-down`; not part of the installed package."""
