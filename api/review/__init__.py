"""The back-office review UI at /review: server-rendered pages for reviewers and admins."""
