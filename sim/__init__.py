"""liqsim: agent-based liquidation-cascade simulation on real contracts."""
