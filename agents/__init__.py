"""liqsim's Mesa agents: traders, liquidators, the oracle reporter, arbitrageurs, background demand."""
