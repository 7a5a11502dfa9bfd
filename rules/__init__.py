"""The local alarm rule engine: pure, deterministic, with the elderly-care rule pack.

The gateway decides alarms itself, with no network, the same way every time::

    rules = load_rules(config.rules, source="home.toml", text=text, devices=config.devices)
    engine = RuleEngine(rules, config.devices, timezone=config.gateway.timezone)
    engine.resume(buffer.active_conditions(), memory)   # after a restart (gatewayd.memory)
    decisions = engine.feed(reading, now)      # list[EmitEvent | LocalAction]
    decisions += engine.tick(now)              # timers: supervision, escalation, inactivity

See :mod:`rules.engine` for what the rules decide and :mod:`rules.config` for the ``[rules]``
table (an empty table is the default pack, ``rules/packs/elderly_care.toml``).
"""

from rules.config import RuleConfigError, RuleSet, load_rules
from rules.decisions import ActiveCondition, ActiveConditionLike, Decision, EmitEvent, LocalAction
from rules.engine import RuleEngine

__all__ = [
    "ActiveCondition",
    "ActiveConditionLike",
    "Decision",
    "EmitEvent",
    "LocalAction",
    "RuleConfigError",
    "RuleEngine",
    "RuleSet",
    "load_rules",
]
