"""The account mirror and the event decoder follow the exchange's interface file
(contracts/interfaces/IMarginExchange.sol): a new event there must be handled or declared."""

from __future__ import annotations

from sim.chain.artifacts import all_abi_entries, interface_entries
from sim.chain.events import EventDecoder
from sim.exchange.book import AccountBook


def _interface_events() -> set[str]:
    return {e["name"] for e in interface_entries("event")}


def test_every_interface_event_is_mirrored_or_declared_irrelevant():
    handled = {name[len("_on_") :] for name in dir(AccountBook) if name.startswith("_on_")}
    events = _interface_events()
    assert handled <= events, f"handlers for events not in the interface: {handled - events}"
    assert not handled & AccountBook.NO_ACCOUNT_CHANGE
    assert handled | AccountBook.NO_ACCOUNT_CHANGE == events, (
        "IMarginExchange events neither mirrored nor declared NO_ACCOUNT_CHANGE: "
        f"{events - handled - AccountBook.NO_ACCOUNT_CHANGE}"
    )


def test_the_decoder_knows_every_interface_event_and_error():
    decoder_events = {e["name"] for e in all_abi_entries("event")}
    assert _interface_events() <= decoder_events
    errors = {e["name"] for e in all_abi_entries("error")}
    assert {e["name"] for e in interface_entries("error")} <= errors
    assert len(EventDecoder()._specs) == len(
        {(e["name"], tuple(i["type"] for i in e["inputs"])) for e in all_abi_entries("event")}
    )
