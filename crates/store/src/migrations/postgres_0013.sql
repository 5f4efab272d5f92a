-- A trouble's fix job, so every page names the job's current state; `fixed`: the fix job
-- succeeded and the center watches for a matching event until the rule's window passes.
ALTER TABLE troubles ADD COLUMN fix_job_id BIGINT;
ALTER TABLE troubles ADD COLUMN fixed_at BIGINT;
CREATE INDEX troubles_fix_job ON troubles (tenant_id, fix_job_id) WHERE fix_job_id IS NOT NULL AND state <> 'resolved';
