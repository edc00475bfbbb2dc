"""``python -m grader autograde``: grade a whole class with nbgrader, in parallel, sandboxed, resumable.

nbgrader grades students one after another, one malformed submission can stop the batch, and its
feedback shows the hidden tests. This command drives nbgrader's own CLI and API, unchanged:

1. **Submissions** (``submissions``): nbgrader's ``<student>/<assignment>/`` layout or a flat folder of
   notebooks and zips; each submission's digest; ``--shard I/K`` or ``--shard auto`` (``shards``: the
   shard of a Slurm array task or a Kubernetes Indexed Job; with K > 1 a run writes in ``OUT/shards/I-of-K/``).
2. **Prechecks** (``precheck``, each student's just before it is graded): what can be repaired is
   repaired, the rest is reported per student and never stops the others.
3. **Workers** (``run.grade_one``, ``scratch``, ``worker``): each student is graded in its own scratch
   course (a copy of source/, the student's checked notebooks, its own SQLite gradebook) by nbgrader's
   ``autograde`` and ``generate_feedback``, in a process of its own forked from a server that has
   imported nbgrader once, killed as a process group at the wall-clock limit; the kernels are
   sandboxed and memory-limited (``sandbox``) and forked from a per-student zygote (``zygote``); each
   cell has a timeout. N of them run at once (default: the number of cores).
4. **Feedback** (``feedback``): outputs cut to a size, tracebacks of failing tests cut to their last
   line, hidden tests removed; a page that still shows a hidden test's line is withheld.
5. **Merge** (``gradebook``): each scratch gradebook's grades and comments are copied into the one real
   gradebook by this process only, one student at a time (SQLite or PostgreSQL by ``--db-url``). A
   student's old submission is replaced, never added to.
6. **Ledger** (``ledger``): ``ledger.jsonl`` (one JSON line per merged student, fsync'ed) records what is
   done and the digest of what was graded. A re-run skips those students; a killed run resumes.
7. **Outputs** in ``--out`` (``summary``): ``grades.csv`` (``nbgrader export``),
   ``feedback/<student>/<assignment>/``, ``autograded/``, ``summary.md`` and ``summary.json``.
8. **Gather** (``gather``, ``python -m grader gather``): once every shard has run, the class's grades.csv,
   summary and files in ``OUT``, and who is missing from the gradebook.

``options`` holds every option and its default, ``cli`` the command line. Importing this package
imports nothing (the sandbox's launcher and the zygote run as ``python -m grader.autograde.<module>``
inside a student's sandbox), and no module of it imports torch.
"""
