"""The waiting line on the pages: a queued job's place and expected start, "Leave the queue", the sidebar's word.

Used by the Train page, the race (Compare) and the sidebar; the figures come from the
shared job manager (``rnn_demo.jobs``), which owns the line.
"""

from __future__ import annotations

import streamlit as st

from rnn_demo.jobs import CANCELLED, QUEUED, TrainingJob, ordinal, shared_manager

QUEUE_POLL_SECONDS = 2.0  # a waiting page redraws its place this often (a class of waiting pages stays cheap)
LEFT_QUEUE = "You left the queue; this job did not run. Start again whenever you like."


def queue_notice(job: TrainingJob, key: str) -> bool:
    """While ``job`` waits: its place in line, when it should start, and a "Leave the queue" button.

    Returns:
        True when the notice was drawn; False when the job is not (or no longer) waiting.
    """
    text = shared_manager().queue_status(job) if job.status == QUEUED else None
    if text is None:
        return False
    st.info(f"{text}.", icon=":material/hourglass_top:")
    st.caption("Every training slot of this server is busy; jobs start in the order they were started. "
               "This page updates by itself.")
    st.button("Leave the queue", key=key, on_click=job.leave_queue,
              help="Gives up your place in line; nothing is trained or saved.")
    return True


def status_word(job: TrainingJob) -> str:
    """The sidebar's word for a waiting or ended job: "queued (3rd)", "left the queue", "finished" …"""
    if job.status == QUEUED:
        position = shared_manager().queue_position(job)
        return f"queued ({ordinal(position)})" if position else "starting"
    if job.status == CANCELLED:
        return "left the queue"
    return job.status
