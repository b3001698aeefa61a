"""The agent-based model end to end on tiny scenarios: the run, its outputs against the chain,
determinism, and what the command line does with bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agents.trader import Trader
from sim.api import resolve_scenario, run_scenario, simulate
from sim.chain.events import EventDecoder
from sim.exchange.book import health_of
from sim.model import LiqSimModel

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
# a tiny run with a deep crash, so that liquidations happen
CRASHY = [
    "markets.0.crash_fall=0.35",
    "markets.1.crash_fall=0.3",
    "traders.count=16",
    "liquidators.count=2",
]


@pytest.fixture(scope="module")
def crashy_model():
    model = LiqSimModel(resolve_scenario(TINY, CRASHY), seed=5)
    model.run()
    return model


def test_tiny_run_produces_every_table(crashy_model):
    tables = crashy_model.recorder.tables()
    assert set(tables) == {
        "blocks",
        "transactions",
        "dropped",
        "liquidations",
        "accounts",
        "traders",
        "exogenous",
        "adl",
        "liquidators",
    }
    assert len(tables["blocks"]) == crashy_model.scenario.run.blocks
    kinds = set(tables["transactions"]["sender_kind"])
    assert {"trader", "oracle", "arbitrageur", "liquidator"} <= kinds
    assert len(tables["liquidations"]) > 0, "the crashy tiny scenario must liquidate someone"


def test_liquidations_table_matches_chain_events_one_for_one(crashy_model):
    """Every Liquidated event on chain has exactly one row, with the same figures."""
    w3 = crashy_model.session.w3
    decoder = EventDecoder()
    exchange = crashy_model.system.exchange.address
    on_chain = []
    for number in range(1, w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=False)
        for tx_hash in block["transactions"]:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            for log in receipt["logs"]:
                from sim.chain.backend import RawLog

                ev = decoder.decode(
                    RawLog(
                        log["address"], tuple(bytes(t) for t in log["topics"]), bytes(log["data"])
                    )
                )
                if ev is not None and ev.name == "Liquidated" and ev.address == exchange:
                    on_chain.append(
                        (
                            "0x" + bytes(tx_hash).hex(),
                            ev.args["owner"],
                            ev.args["subaccount"],
                            ev.args["badDebt"],
                        )
                    )
    table = crashy_model.recorder.tables()["liquidations"]
    rows = sorted(
        zip(
            table["tx_hash"],
            table["owner"],
            table["subaccount"],
            (table["bad_debt_usd"] * 1e6).round().astype(int),
            strict=True,
        )
    )
    assert sorted(on_chain) == rows
    assert len(rows) > 0


def test_account_mirror_equals_chain_state(crashy_model):
    """The event-built book (what agents see) agrees with the contract's own views."""
    ex = crashy_model.system.exchange.functions
    book = crashy_model.view.book
    prices = crashy_model.view.margin_prices_e8()
    for (owner, sub), acct in book.accounts.items():
        onchain = ex.getAccount(owner, sub).call()
        assert onchain[3] == acct.collateral_units
        h = ex.accountHealth(owner, sub).call()
        mine = health_of(acct, prices, book.risk)
        assert (h[0], h[1], h[2], h[4]) == (
            mine.equity_units,
            mine.initial_requirement_units,
            mine.maintenance_requirement_units,
            mine.liquidatable,
        )
    assert [o.price_e8 for o in crashy_model.view.oracles] == [
        f.functions.latestRoundData().call()[1] for f in crashy_model.system.feeds
    ]


def test_insurance_and_bad_debt_series_match_chain(crashy_model):
    blocks = crashy_model.recorder.tables()["blocks"]
    ex = crashy_model.system.exchange.functions
    assert round(blocks["insurance_fund_usd"].iloc[-1] * 1e6) == ex.insuranceFund().call()
    assert round(blocks["bad_debt_usd"].iloc[-1] * 1e6) == ex.totalBadDebt().call()


def test_negative_equity_and_shortfall_series_match_chain(crashy_model):
    """The losses marked to market come from the chain's own health views: every account with
    positions and negative equity counts, whether or not anyone liquidates it."""
    m = crashy_model
    blocks = m.recorder.tables()["blocks"]
    ex = m.system.exchange.functions
    keys = [k for k, a in m.view.book.accounts.items() if a.positions]
    healths = ex.healthOf([k[0] for k in keys], [k[1] for k in keys]).call() if keys else []
    negative = sum(-h[0] for h in healths if h[0] < 0)
    last = blocks.iloc[-1]
    assert round(last["negative_equity_usd"] * 1e6) == negative
    assert last["underwater_accounts"] == sum(1 for h in healths if h[0] < 0)
    expected = max(0, negative + ex.totalBadDebt().call() - ex.insuranceFund().call())
    assert round(last["shortfall_usd"] * 1e6) == expected
    assert (blocks["shortfall_usd"] >= 0).all()
    assert (blocks["negative_equity_external_usd"] >= 0).all()


def test_losing_liquidators_pay_gas(crashy_model):
    tx = crashy_model.recorder.tables()["transactions"]
    liq = tx[tx["sender_kind"] == "liquidator"]
    lost = liq[liq["status"] == 0]
    if len(lost):
        assert (lost["revert_reason"] == "AccountHealthy").all()
        assert (lost["fee_paid_wei"] > 0).all()


def test_run_folder_is_byte_identical_for_the_same_seed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        run_scenario(
            TINY,
            seed=11,
            out=out,
            overrides=["run.blocks=25", "crash.start_block=5", "crash.duration_blocks=15"],
            counterfactual=False,
        )
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert Path("blocks.parquet") in files and Path("plots/prices.png") in files
    for rel in files:
        if rel.name == "timing.json":
            continue
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), (
            f"{rel} differs between identical runs"
        )
    assert json.loads((a / "status.json").read_text())["state"] == "complete"


def test_different_seeds_differ():
    s = resolve_scenario(TINY, ["run.blocks=15", "crash.start_block=2", "crash.duration_blocks=10"])
    t1, _, _ = simulate(s, 1)
    t2, _, _ = simulate(s, 2)
    assert not t1["blocks"]["ETH_external_usd"].equals(t2["blocks"]["ETH_external_usd"])


def test_margin_mode_override_keeps_the_same_price_path_and_traders():
    s = resolve_scenario(
        TINY,
        [
            "run.blocks=12",
            "crash.start_block=2",
            "crash.duration_blocks=8",
            "run.endogenous_impact=false",
        ],
    )
    cross = LiqSimModel(s.with_overrides(["run.margin_mode_override=cross"]), seed=3)
    iso = LiqSimModel(s.with_overrides(["run.margin_mode_override=isolated"]), seed=3)
    assert (cross.external.exogenous == iso.external.exogenous).all()
    tc, ti = list(cross.agents_by_type[Trader]), list(iso.agents_by_type[Trader])
    assert [t.profile for t in tc] == [t.profile for t in ti]
    assert {t.mode for t in tc} == {"cross"} and {t.mode for t in ti} == {"isolated"}
    assert any(len(t.profile.markets) > 1 for t in tc)
    multi = next(t for t in ti if len(t.profile.markets) > 1)
    assert len(multi.subs) == len(multi.profile.markets)  # one ISOLATED subaccount per market


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sim.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("traders.levrage_max=3", "levrage_max"),
        ("markets.0.volatility_annual=-1", "volatility_annual"),
        ("markets.0.maintenance_margin=0.2", "maintenance_margin"),
        ("traders.max_subaccounts=40", "max_subaccounts"),
        ("traders.count=abc", "traders.count"),
    ],
)
def test_cli_rejects_bad_scenarios_with_exit_2(tmp_path, override, needle):
    r = _cli("run", str(TINY), "--out", str(tmp_path / "x"), "--set", override, "--quiet")
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_rejects_nan_and_negative_csv_price_paths(tmp_path):
    for bad in ("nan", "-5"):
        csv = tmp_path / f"path_{bad}.csv"
        rows = ["ETH,BTC"] + [f"{2500 - i},{60000 - i}" for i in range(41)]
        rows[10] = f"{bad},60000"
        csv.write_text("\n".join(rows) + "\n")
        r = _cli(
            "run",
            str(TINY),
            "--out",
            str(tmp_path / "x"),
            "--quiet",
            "--set",
            'price_path.kind="csv"',
            "--set",
            f'price_path.csv_path="{csv}"',
        )
        assert r.returncode == 2, r.stderr
        assert "ETH" in r.stderr and "Traceback" not in r.stderr


def test_cli_run_writes_folder_and_says_where(tmp_path):
    out = tmp_path / "run"
    r = _cli(
        "run",
        str(TINY),
        "--seed",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--no-counterfactual",
        "--blocks",
        "30",
        "--set",
        "crash.duration_blocks=15",
    )
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and "plots" in r.stdout
    assert len(pd.read_parquet(out / "blocks.parquet")) == 30
    summary = json.loads((out / "summary.json").read_text())
    assert summary["blocks"] == 30 and "gas_by_kind" in summary


def test_interrupted_run_keeps_what_it_recorded(tmp_path, monkeypatch):
    from sim import api

    calls = {"n": 0}
    real_step = LiqSimModel.step

    def failing_step(self):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("chain died")
        real_step(self)

    monkeypatch.setattr(LiqSimModel, "step", failing_step)
    monkeypatch.setattr(api, "CHECKPOINT_BLOCKS", 5)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="chain died"):
        run_scenario(TINY, seed=1, out=out, counterfactual=False)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "incomplete" and "chain died" in status["error"]
    assert len(pd.read_parquet(out / "blocks.parquet")) == 7
    assert (out / "scenario.toml").is_file()


# ------------------------------------------------------------- the liquidation waterfall

WATERFALL = [
    "exchange.backstop_threshold=0.6667",
    "exchange.adl_enabled=true",
    "markets.0.partial_close_factor=0.2",
    "markets.0.full_close_notional_usd=1000",
    "markets.1.partial_close_factor=0.2",
    "markets.1.full_close_notional_usd=1000",
    "exchange.insurance_fund_usd=300",
    "keeper.delay_blocks=3",
]


@pytest.fixture(scope="module")
def waterfall_model():
    # seed 8: a run whose crash walks every step (partial, backstop, auto-deleveraging)
    model = LiqSimModel(resolve_scenario(TINY, CRASHY + WATERFALL), seed=8)
    model.run()
    return model


def test_a_crash_walks_the_waterfall_in_the_model(waterfall_model):
    """Partial liquidations by private liquidators, a backstop takeover and auto-deleveraging
    by the keeper, each recorded once, and the account mirror still equal to the chain."""
    m = waterfall_model
    tables = m.recorder.tables()
    liq, adl = tables["liquidations"], tables["adl"]
    kinds = liq["kind"].value_counts().to_dict()
    assert kinds.get("liquidation", 0) > 0 and liq["partial"].sum() > 0
    assert kinds.get("backstop", 0) > 0 and kinds.get("deleverage", 0) > 0
    keeper = next(a for a in m.by_address.values() if a.kind == "keeper")
    assert set(liq.loc[liq["kind"] != "liquidation", "liquidator"]) == {keeper.address}
    assert len(adl) > 0 and (adl["counterparty_kind"] != "keeper").all()
    ex = m.system.exchange.functions
    prices = m.view.margin_prices_e8()
    for (owner, sub), acct in m.view.book.accounts.items():
        assert ex.getAccount(owner, sub).call()[3] == acct.collateral_units
        assert ex.accountHealth(owner, sub).call()[0] == (
            health_of(acct, prices, m.view.book.risk).equity_units
        )
    vault = m.view.book.vault()
    assert vault.positions, "the backstop took positions over"
    assert m.view.insurance_units == ex.insuranceFund().call()
    assert m.view.bad_debt_units == ex.totalBadDebt().call()
    blocks = tables["blocks"]
    assert blocks["backstops"].sum() == kinds["backstop"]
    assert blocks["deleveragings"].sum() == kinds["deleverage"]


def test_the_waterfall_figures_in_the_summary(waterfall_model):
    from sim.output.summary import summarize

    tables = waterfall_model.recorder.tables()
    facts = {"market_names": ["ETH", "BTC"], "initial_insurance_usd": 300.0}
    w = summarize(tables, facts)["waterfall"]
    liq = tables["liquidations"]
    assert w["liquidations_partial"]["count"] == int(liq["partial"].sum())
    assert w["backstops"]["count"] == int((liq["kind"] == "backstop").sum())
    assert w["deleveragings"]["count"] == int((liq["kind"] == "deleverage").sum())
    assert w["adl_fills"] == len(tables["adl"])
    assert sum(w["adl_notional_by_counterparty_kind_usd"].values()) == pytest.approx(
        tables["adl"]["quote_usd"].abs().sum(), abs=1e-3
    )


def test_without_the_waterfall_there_is_no_keeper():
    m = LiqSimModel(resolve_scenario(TINY, ["traders.count=2"]), seed=1)
    assert m.roles.keeper is None and "keeper" not in {a.kind for a in m.by_address.values()}


def test_each_liquidation_says_what_became_of_the_owners_rescue(crashy_model, monkeypatch):
    liq = crashy_model.recorder.tables()["liquidations"]
    assert set(liq["rescue"]) <= {"none", "pending", "priced_out"}
    # on a fresh model: no rescue; a top-up waiting in the mempool is "pending"; left out of the
    # last block for its fee, "priced_out"
    from agents.intents import Deposit, Send

    m = LiqSimModel(resolve_scenario(TINY, ["traders.count=2"]), seed=1)
    rec, trader = m.recorder, m.traders[0]
    assert rec.rescue_status(trader.address) == "none"
    wallet = m.wallets[trader.address]
    pending = wallet.execute(Send(Deposit(0, 10**6), 10**9, "topup"), m.block, 10**9)
    assert pending is not None and rec.rescue_status(trader.address) == "pending"
    monkeypatch.setattr(rec, "_waiting", {pending.tx_id: "fee_cap_below_base_fee"})
    assert rec.rescue_status(trader.address) == "priced_out"
