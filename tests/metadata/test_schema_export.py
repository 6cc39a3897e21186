"""The exported JSON Schema: up to date, valid draft 2020-12, usable by
`$ref` per file kind, precise in its errors, and never looser than the
models (what it accepts, the models parse)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from loomcrm.metadata import model
from loomcrm.metadata.schema import SCHEMA_FILE, SCHEMA_ID, build_schema, schema_problems, schema_text

REPO = Path(__file__).resolve().parents[2]
BASE = Path(__file__).resolve().parent / "base_bundle"
KINDS = {"bundle.json": "manifest", "objects": "object", "workflows": "workflow"}


def test_exported_schema_is_up_to_date():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "metadata/bundle.schema.json is out of date: run `python -m loomcrm.metadata.schema`")


def test_module_rewrites_the_schema(tmp_path):
    target = tmp_path / "bundle.schema.json"
    done = subprocess.run([sys.executable, "-m", "loomcrm.metadata.schema", str(target)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == schema_text()


def test_schema_is_valid_draft_2020_12():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert {"manifest", "object", "workflow"} <= set(schema["$defs"])


def _files(root: Path):
    yield "manifest", json.loads((root / "bundle.json").read_text(encoding="utf-8"))
    for folder, kind in (("objects", "object"), ("workflows", "workflow")):
        for path in sorted((root / folder).glob("*.json")):
            yield kind, json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", ["manifest", "object", "workflow"])
def test_each_file_kind_is_usable_by_ref(kind):
    """What an editor or a CI pipeline does: `$ref` into the published file."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    registry = Registry().with_resource(SCHEMA_ID, Resource.from_contents(schema))
    validator = Draft202012Validator({"$ref": f"{SCHEMA_ID}#/$defs/{kind}"}, registry=registry)
    documents = [data for k, data in _files(BASE) if k == kind]
    assert documents
    for data in documents:
        assert list(validator.iter_errors(data)) == []
    assert list(validator.iter_errors({"name": "x", "surprise": 1}))


def test_discriminated_unions_give_precise_errors():
    wrong_type = {"name": "lead", "fields": [{"name": "a", "type": "text"}, {"name": "b", "type": "curency"}]}
    problems = schema_problems("object", wrong_type, "objects/lead.json")
    assert [(p.path, p.code) for p in problems] == [("fields[1].type", "schema")]
    assert problems[0].message.startswith("'curency' is not one of ['text', 'long_text', 'integer'")
    assert "did you mean 'currency'?" in problems[0].message

    inside_branch = {"name": "lead", "fields": [{"name": "a", "type": "lookup", "to": 5, "colour": "red"}]}
    problems = schema_problems("object", inside_branch, "objects/lead.json")
    assert sorted((p.path, p.code) for p in problems) == [("fields[0].colour", "unknown_key"), ("fields[0].to", "schema")]


def test_optional_keys_have_no_null_branch():
    """Errors point inside an optional key, not at "not valid under any of"."""
    problems = schema_problems("object", {"name": "lead", "title_field": "Bad Name", "fields": [
        {"name": "a", "type": "text", "max_length": 0}]}, "objects/lead.json")
    assert sorted((p.path, p.code) for p in problems) == [("fields[0].max_length", "schema"), ("title_field", "schema")]
    assert all("any of the given schemas" not in p.message for p in problems)


def test_all_errors_are_reported_not_the_first():
    problems = schema_problems("workflow", {"name": "Bad", "object": 3, "trigger": {"on": "never"}, "actions": []},
                               "workflows/bad.json")
    assert sorted(p.path for p in problems) == ["actions", "name", "object", "trigger.on"]


def test_long_values_are_shortened_in_messages():
    problems = schema_problems("object", {"name": "x" * 500, "fields": [{"name": "a", "type": "text"}]}, "objects/x.json")
    assert len(problems) == 1 and len(problems[0].message) < 200


ACCEPTED_EDGE_CASES = [
    ("object", {"name": "a", "fields": [{"name": "n", "type": "text", "max_length": 3.0}]}),
    ("object", {"name": "a", "label": {}, "fields": [{"name": "n", "type": "integer", "default": 2}]}),
    ("object", {"name": "a", "fields": [{"name": "n", "type": "decimal", "min": 1, "max": 2.5, "default": "1.5"}]}),
    ("object", {"name": "a", "fields": [{"name": "r", "type": "rollup", "from": "b", "via": "a", "function": "count"}]}),
    ("object", {"name": "a", "fields": [{"name": "t", "type": "multi_picklist", "default": ["x"],
                                         "options": [{"value": "x", "color": "green"}]}]}),
    ("workflow", {"name": "w", "object": "a", "trigger": {"on": "stage_change", "to": "won"},
                  "actions": [{"type": "update", "values": {"f": "1"}}]}),
    ("manifest", {"format": "loom/1", "name": "a", "version": "1.0.0-beta.1", "requires": {"crm": ">=1.0,<2"}}),
]


@pytest.mark.parametrize("kind,data", ACCEPTED_EDGE_CASES)
def test_what_the_schema_accepts_the_models_parse(kind, data):
    assert schema_problems(kind, data, "f.json") == []
    cls = {"manifest": model.BundleManifest, "object": model.ObjectDef, "workflow": model.Workflow}[kind]
    cls.model_validate(data)


@pytest.mark.parametrize("kind,data", [
    ("object", {"name": "lead\n", "fields": [{"name": "n", "type": "text"}]}),
    ("object", {"name": "a", "label": {"EN": "x"}, "fields": [{"name": "n", "type": "text"}]}),
    ("object", {"name": "a", "fields": [{"name": "n", "type": "text", "label": None}]}),
    ("workflow", {"name": "w", "object": "a", "trigger": {"on": "create"},
                  "actions": [{"type": "update", "values": {"Bad": "1"}}]}),
])
def test_the_schema_refuses(kind, data):
    assert schema_problems(kind, data, "f.json")


def test_every_model_is_in_the_schema():
    defs = build_schema()["$defs"]
    for name in ("BundleManifest", "ObjectDef", "Workflow", "StageField", "Criterion", "Trigger", "WebhookAction"):
        assert name in defs
    assert defs["ObjectDef"]["properties"]["fields"]["items"]["properties"]["type"]["enum"] == list(model.FIELD_TYPES)


# --- perturbed documents: the invariant and the robustness of the passes ---------

_VALUES = [None, 0, -1, 1.0, 2.5, True, "", "x", "amount", "Bad Name", "lead\n", [], {}, ["name"], {"en": "x"},
           {"EN": "x"}, "open", "won", "lookup", "rollup", "formula", "text", "count", "1.0.0", "-3d", "0 8 * * 1"]
_KEYS = ["type", "name", "to", "from", "via", "field", "fields", "stages", "values", "object", "on", "cron",
         "default", "min", "max", "options", "label", "uid", "returns", "expression", "scale", "format", "requires"]


def _paths(data, path=()):
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, path + (index,))


def _perturb(data, rnd):
    path = rnd.choice([p for p in _paths(data) if p])
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    roll = rnd.random()
    if roll < 0.3:
        del parent[path[-1]]
    elif roll < 0.45 and isinstance(parent, dict):
        parent[rnd.choice(_KEYS)] = rnd.choice(_VALUES)
    else:
        parent[path[-1]] = rnd.choice(_VALUES)


def test_perturbed_documents_the_schema_accepts_the_models_parse():
    import copy
    import random

    classes = {"manifest": model.BundleManifest, "object": model.ObjectDef, "workflow": model.Workflow}
    documents = list(_files(BASE))
    accepted = 0
    for seed in range(1500):
        rnd = random.Random(seed)
        kind, original = rnd.choice(documents)
        data = copy.deepcopy(original)
        for _ in range(rnd.randint(1, 3)):
            _perturb(data, rnd)
        if not schema_problems(kind, data, "f.json"):
            accepted += 1
            classes[kind].model_validate(data)  # raises if the invariant breaks
    assert accepted > 100  # the perturbations do not all break the schema


def test_perturbed_bundles_never_crash_the_checks(bundle_dir):
    import copy
    import random

    from loomcrm.metadata.validate import validate_bundle

    originals = {p.relative_to(bundle_dir.root).as_posix(): json.loads(p.read_text(encoding="utf-8"))
                 for p in bundle_dir.root.rglob("*.json")}
    for seed in range(60):
        rnd = random.Random(seed)
        changed = {}
        for _ in range(rnd.randint(1, 4)):
            rel = rnd.choice(sorted(originals))
            data = changed.get(rel, copy.deepcopy(originals[rel]))
            _perturb(data, rnd)
            changed[rel] = data
        for rel, data in originals.items():
            bundle_dir.save(rel, changed.get(rel, data))
        problems = validate_bundle(bundle_dir.root)
        assert not [p for p in problems if p.code == "internal_error"], (seed, problems)
