"""Instructor tools: the course directory and its demo class (``course``), the answer keys (``keys``), and
``python -m grader demo`` (``demo``). They read the instructor's source notebooks and hold no solution."""
