"""The stages a worker can run, by name: readiness and the worker take this list."""

from __future__ import annotations

from services.processors.archive import ArchiveStage
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage

STAGES = {"identity": IdentityStage, "projections": ProjectionStage, "archive": ArchiveStage}
