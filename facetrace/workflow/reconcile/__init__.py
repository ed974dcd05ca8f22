"""Reconciliation of ante-mortem records (reports) with post-mortem records (cases) beyond the face:
descriptors, distinguishing marks, personal effects and primary identifier references
(:mod:`.facts`); which pairs recorded facts rule out (:mod:`.rules`); how far a pair agrees, and
how that agreement ranks a lead together with the face score (:mod:`.agreement`).

The modules here are pure: no database, no model. The workflow services store the facts and call
them; ``bench/reconcile.py`` measures them.
"""
