"""result_result (its id is a bigint in both reference schemas)."""

from __future__ import annotations

from django.db import models


class Result(models.Model):
    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey("session.Session", on_delete=models.CASCADE, null=True)
    participant = models.ForeignKey("participant.Participant", on_delete=models.CASCADE, null=True)
    section = models.ForeignKey("section.Section", on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField()
    question_key = models.CharField(max_length=64)
    expected_response = models.CharField(max_length=100, null=True)
    given_response = models.CharField(max_length=100, null=True)
    comment = models.CharField(max_length=100)
    score = models.FloatField(null=True)
    scoring_rule = models.CharField(max_length=64)
    json_data = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "result_result"
