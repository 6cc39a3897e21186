"""A small CRM model for the expression tests."""

from loomcrm.metadata.model import ObjectDef

ACCOUNT = ObjectDef.model_validate({"name": "account", "fields": [
    {"name": "name", "type": "text"}, {"name": "industry", "type": "picklist", "options": [{"value": "retail"}, {"value": "tech"}]},
    {"name": "parent", "type": "lookup", "to": "account"}, {"name": "employees", "type": "integer"}]})
OPPORTUNITY = ObjectDef.model_validate({"name": "opportunity", "fields": [
    {"name": "name", "type": "text"}, {"name": "amount", "type": "currency"}, {"name": "account", "type": "lookup", "to": "account"},
    {"name": "close_date", "type": "date"}, {"name": "closed_at", "type": "datetime"}, {"name": "priority", "type": "integer"},
    {"name": "hot", "type": "boolean"}, {"name": "tags", "type": "multi_picklist", "options": [{"value": "vip"}]},
    {"name": "regarding", "type": "related_to", "to": ["account"]},
    {"name": "weighted", "type": "formula", "expression": "amount * 2", "returns": "currency"},
    {"name": "stage", "type": "stage", "stages": [
        {"value": "qualification", "probability": 10}, {"value": "negotiation", "probability": 60},
        {"value": "won", "category": "won", "probability": 100}, {"value": "lost", "category": "lost", "probability": 0}]}]})
OBJECTS = {"account": ACCOUNT, "opportunity": OPPORTUNITY}
