"""A row's place and name in the table: its setting, its label, its sort order."""

from __future__ import annotations

from harness.config import KEYED_WITHOUT_OPTIONS, OPTIONS_ADDED_LATER, method_options

METHOD_ORDER = ("ft", "mmd", "coral", "dann", "ynet", "meanteacher", "selftrain")


def method_order(label: str) -> tuple:
    """Sort key of a row label: the paper's methods in its order, then emda's additions;
    a variant ("dann (classifier=position)") right after its method."""
    method = label.split()[0]
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else 99, label)


def row_setting(config: dict) -> str:
    """The table's setting column: target labels used, then how the models were scored."""
    c = config
    setting = f"semi {c['semi_fraction']:.0%}" if c["semi_fraction"] else "unsupervised"
    setting += f", {c['planes']} planes" if "planes" in c else ""
    setting += ", tta" if c.get("tta") else ""
    setting += f", predicted in {c['predict_precision']}" if "predict_precision" in c else ""
    averaged = len(c.get("ensemble_seeds") or [])
    return setting + (f", {averaged}-seed ensemble" if averaged else "")


def row_label(config: dict) -> str:
    """A plain method name is what `emda adapt --method NAME` trains today; a variant
    names its options and augmentation that differ, e.g. "dann (classifier=position)"."""
    changed = {**non_default_options(config), **config.get("augment", {})}
    for name in ("target_planes", "average_weights", "precision"):
        if name in config:
            changed[name] = config[name]
    matched = " (matched sharpness)" if config.get("match_sharpness") else ""
    if "recipe" in config:  # its stages, so that two recipes make two rows
        total = config["iterations"]
        stages = ", ".join(
            f"{st['method']} {st.get('iterations') or round(st.get('share', 1.0) * total)}"
            for st in config["recipe"]["stages"]
        )
        return f"recipe ({stages})" + _named(changed)
    return config["method"] + _named(changed) + matched


def _named(changed: dict) -> str:
    return "".join(f" ({k}={v})" for k, v in changed.items())


def non_default_options(config: dict) -> dict:
    """The options a row trained with that differ from its method's current defaults."""
    method = config["method"]
    # rows keyed before an option existed trained with its value then
    before = {**KEYED_WITHOUT_OPTIONS.get(method, {}), **OPTIONS_ADDED_LATER.get(method, {})}
    options = {**before, **config.get("opt", {})}
    return {k: v for k, v in options.items() if method_options(method, []).get(k) != v}


def has_default_settings(config: dict) -> bool:
    """Whether a row trained with its method's current default options and augmentation."""
    varied = {"augment", "match_sharpness", "target_planes", "average_weights", "precision"}
    return not non_default_options(config) and not varied & config.keys()


def setting_order(setting: str) -> float:
    """Sort key of a setting: "unsupervised" first, then "semi 5%", "semi 15%", ... by share."""
    share = 0.0 if setting.startswith("unsupervised") else float(setting.split()[1].rstrip("%,"))
    return share + (0.5 if "," in setting else 0.0)  # after its plainly scored row
