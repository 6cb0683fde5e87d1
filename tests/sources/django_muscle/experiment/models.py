"""experiment_block (only what foreign keys need) and experiment_feedback."""

from __future__ import annotations

from django.db import models


class Block(models.Model):
    slug = models.SlugField(max_length=64, unique=True)

    class Meta:
        managed = False
        db_table = "experiment_block"


class Feedback(models.Model):
    text = models.TextField()
    block = models.ForeignKey(Block, on_delete=models.CASCADE)

    class Meta:
        managed = False
        db_table = "experiment_feedback"
