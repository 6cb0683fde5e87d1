"""session_session."""

from __future__ import annotations

from django.db import models


class Session(models.Model):
    block = models.ForeignKey("experiment.Block", on_delete=models.CASCADE, null=True)
    participant = models.ForeignKey("participant.Participant", on_delete=models.CASCADE)
    playlist = models.ForeignKey("section.Playlist", on_delete=models.SET_NULL, null=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    json_data = models.JSONField(null=True)
    final_score = models.FloatField()

    class Meta:
        managed = False
        db_table = "session_session"
