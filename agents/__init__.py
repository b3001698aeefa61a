"""liqsim's Mesa agents: traders, liquidators, oracle reporter, arbitrageurs, background."""
