// Anchor translation unit of the tests' shared precompiled header (see tests/CMakeLists.txt).
int stochgrad_test_pch_anchor() { return 0; }
