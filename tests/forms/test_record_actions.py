"""Convert and Merge are offered to whom the role lets do them: a sales rep
converts the lead they own and merges their leads, but may not delete
accounts, so no merge is offered there (the record service would refuse)."""

from __future__ import annotations

from test_pool_pages import app  # noqa: F401  (the crm pack with reps and a manager)
from test_report_pages import signed_in


def test_a_rep_is_offered_only_what_their_role_allows(app):  # noqa: F811
    wang = signed_in(app, "wang")
    lead = wang.post("/api/v1/lead", json={"name": "周杰", "company": "无锡华通", "source": "website",
                                           "status": "qualified", "phone": "13812345678"}).json()
    page = wang.get(f"/app/lead/{lead['id']}").text
    assert f'href="/app/lead/{lead["id"]}/convert"' in page
    assert "data-bulk-merge" in wang.get("/app/lead").text          # reps delete their own leads
    assert "data-bulk-merge" not in wang.get("/app/account").text   # ... but no accounts
    boss = signed_in(app, "boss")
    assert "data-bulk-merge" in boss.get("/app/account").text
