#!/usr/bin/env python3
"""Generate the config-driven parts of infra/template.yaml from config/nectar.toml.

A static CloudFormation template cannot loop over the config file, so the parts that depend on
it live between marker lines in the template and are rewritten by this script:

* ``sites``: the site keys, used by the Glue table's partition projection (an enum of sites);
* ``schedules``: one EventBridge Scheduler schedule per training task that declares a
  ``schedule`` (``[sites.<site>.tasks.<task>] schedule = "rate(1 hour)" | "cron(...)"``), whose
  target is the train function with the constant input ``{"task": "<task>", "site": "<site>"}``,
  a retry policy and the dead-letter queue ``TrainDlq``.
  A task without ``schedule`` is run by hand only.
* ``schedules`` also holds one schedule per site that declares an online report
  (``[sites.<site>.report] schedule = "rate(1 day)"``): the train function with the input
  ``{"site": "<site>", "job": "report"}``, which writes ``reports/site=…/date=…/report.{html,json}``.
* ``spark``: for tasks with ``engine = "spark"`` (trained past one machine by
  ``jobs/spark/nectar_als.py``), the EMR Serverless application ``SparkApplication``, its job
  role, one Step Functions state machine ``SparkTrainStateMachine`` (the job run, then the train
  function's ``publish`` job on its artifacts) and per scheduled spark task a schedule starting
  it. Spark tasks get no train-function schedule. Nothing is generated without spark tasks.
* ``schedules`` also holds one compaction schedule per site, always (no config: every site's
  event log is compacted): the train function daily at ``COMPACT_SCHEDULE`` (01:30 UTC, after
  the day ended and the archive caught up) with the input ``{"site": "<site>", "job":
  "compact"}``, which rewrites every finished day that needs it into ``compacted/``.
* ``alarms``: the CloudWatch alarms on the application metrics (namespace ``Nectar``, names from
  shared/platform/src/observe/names.rs), which need concrete dimension values: per site the
  fallback share, collect rejection ratio, archive lag, parked records and dropped served events;
  per scheduled task the model staleness (no ``train_runs`` with status ``published`` within twice
  the schedule's interval) and two refused or failed runs in a row. All go to ``AlarmTopic``.

Usage: ``python3 infra/gen_schedules.py [--config FILE] [--template FILE] [--check]``.
Without ``--check`` the template is rewritten in place; with it nothing is written and the exit
status is 1 when the template and the config disagree (CI runs this), 2 when the config or the
template is malformed. Only the standard library is used (Python 3.11+, ``tomllib``).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
# EventBridge Scheduler syntax: rate(value unit) with the unit singular exactly when value is 1,
# or cron() with six fields (minutes hours day-of-month month day-of-week year).
RATE_RE = re.compile(r"^rate\((?P<n>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
CRON_RE = re.compile(r"^cron\((?P<fields>[^()]+)\)$")
MARKER = "# {edge} GENERATED {name}"
# Each schedule's RetryPolicy: how often and how long Scheduler retries an invocation that Lambda
# refused before sending it to the dead-letter queue (TrainDlq).
RETRY_ATTEMPTS = 3
RETRY_MAX_AGE_S = 900
# When each site's event log is compacted: daily, once the previous UTC day has ended and the
# archive has written its last records (late events are picked up by the next day's run).
COMPACT_SCHEDULE = "cron(30 1 * * ? *)"


class ConfigError(Exception):
    """The config file cannot be turned into template parts; the message names the place."""


def check_schedule(expr: object, where: str) -> str:
    if not isinstance(expr, str):
        raise ConfigError(f"{where}.schedule: expected a string, got {type(expr).__name__}")
    rate = RATE_RE.match(expr)
    if rate:
        n, unit = int(rate["n"]), rate["unit"]
        if (n == 1) != (not unit.endswith("s")):
            raise ConfigError(
                f"{where}.schedule: {expr!r}: EventBridge wants the singular unit for 1 and the plural otherwise"
            )
        return expr
    cron = CRON_RE.match(expr)
    if cron:
        fields = cron["fields"].split()
        if len(fields) != 6:
            raise ConfigError(
                f"{where}.schedule: {expr!r}: cron() takes 6 fields (minutes hours day-of-month month"
                f" day-of-week year), got {len(fields)}"
            )
        if "?" not in (fields[2], fields[4]):
            raise ConfigError(f"{where}.schedule: {expr!r}: one of day-of-month and day-of-week must be '?'")
        return expr
    raise ConfigError(f"{where}.schedule: {expr!r} is neither rate(N unit) nor cron(6 fields)")


def read_config(path: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Return the sorted site keys and the sorted (site, task, schedule) triples."""
    try:
        with path.open("rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    sites = cfg.get("sites")
    if not isinstance(sites, dict) or not sites:
        raise ConfigError(f"{path}: [sites.<site>] tables are required (found none)")
    keys, tasks = [], []
    for site, site_cfg in sorted(sites.items()):
        if not NAME_RE.match(site) or site == UNKNOWN_SITE:
            raise ConfigError(f"sites.{site}: site keys are [a-z0-9_-]{{1,64}}, not {UNKNOWN_SITE}")
        keys.append(site)
        site_tasks = site_cfg.get("tasks", {}) if isinstance(site_cfg, dict) else None
        if not isinstance(site_tasks, dict):
            raise ConfigError(f"sites.{site}.tasks: expected a table")
        for task, task_cfg in sorted(site_tasks.items()):
            where = f"sites.{site}.tasks.{task}"
            if not NAME_RE.match(task):
                raise ConfigError(f"{where}: task names are [a-z0-9_-]{{1,64}}")
            if not isinstance(task_cfg, dict):
                raise ConfigError(f"{where}: expected a table")
            if "schedule" in task_cfg and task_cfg.get("engine", "native") != "spark":
                tasks.append((site, task, check_schedule(task_cfg["schedule"], where)))
    return keys, tasks


def read_reports(path: Path) -> list[tuple[str, str]]:
    """Return the sorted (site, schedule) pairs of the sites that declare a scheduled report."""
    with path.open("rb") as f:
        cfg = tomllib.load(f)
    out = []
    for site, site_cfg in sorted(cfg.get("sites", {}).items()):
        report = site_cfg.get("report") if isinstance(site_cfg, dict) else None
        if report is None:
            continue
        if not isinstance(report, dict) or "schedule" not in report:
            raise ConfigError(f"sites.{site}.report: expected a table with a schedule")
        out.append((site, check_schedule(report["schedule"], f"sites.{site}.report")))
    return out


def _train_function_schedule(indent: str, lid: str, description: str, expr: str, payload: dict) -> list[str]:
    """One EventBridge Scheduler schedule that invokes the train function with `payload`.

    Scheduler's retries and DLQ are about starting a run: train is invoked asynchronously, so
    the invocation succeeds once Lambda has queued the event, and a run that fails goes to
    train's on-failure destination instead (TrainFunction's EventInvokeConfig). An invocation
    Lambda refused (throttled, function or permission missing) is retried for up to 15 minutes,
    then goes to TrainDlq, which is alarmed on.
    """
    body = json.dumps(payload, separators=(",", ":"))
    return [
        f"{indent}{lid}:",
        f"{indent}  Type: AWS::Scheduler::Schedule",
        f"{indent}  Properties:",
        f"{indent}    Description: {description}",
        f"{indent}    ScheduleExpression: {expr}",
        f"{indent}    ScheduleExpressionTimezone: UTC",
        f"{indent}    FlexibleTimeWindow:",
        f'{indent}      Mode: "OFF"',
        f"{indent}    State: !Ref TrainingSchedulesState",
        f"{indent}    Target:",
        f"{indent}      Arn: !GetAtt TrainFunction.Arn",
        f"{indent}      RoleArn: !GetAtt SchedulerRole.Arn",
        f"{indent}      Input: '{body}'",
        f"{indent}      RetryPolicy:",
        f"{indent}        MaximumRetryAttempts: {RETRY_ATTEMPTS}",
        f"{indent}        MaximumEventAgeInSeconds: {RETRY_MAX_AGE_S}",
        f"{indent}      DeadLetterConfig:",
        f"{indent}        Arn: !GetAtt TrainDlq.Arn",
    ]


def render_report_schedules(reports: list[tuple[str, str]], indent: str) -> list[str]:
    out: list[str] = []
    ids = logical_ids([(site, "", expr) for site, expr in reports], prefix="ReportSchedule")
    for lid, (site, expr) in zip(ids, reports):
        out += _train_function_schedule(
            indent, lid, f"Nectar online report of site {site} (config/nectar.toml)", expr,
            {"site": site, "job": "report"})
    return out


def render_compact_schedules(keys: list[str], indent: str) -> list[str]:
    out: list[str] = []
    ids = logical_ids([(site, "", COMPACT_SCHEDULE) for site in keys], prefix="CompactSchedule")
    for lid, site in zip(ids, keys):
        out += _train_function_schedule(
            indent, lid, f"Nectar event-log compaction of site {site} (finished days to Parquet)",
            COMPACT_SCHEDULE, {"site": site, "job": "compact"})
    return out


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name) if part)


def logical_ids(tasks: list[tuple[str, str, str]], prefix: str = "TrainSchedule") -> list[str]:
    """Readable logical ids; a hash suffix only where two names fold to the same id (a-b, a_b)."""
    base = [f"{prefix}{camel(site)}{camel(task)}" for site, task, _ in tasks]
    return [
        b if base.count(b) == 1 else b + hashlib.sha256(f"{s}/{t}".encode()).hexdigest()[:8]
        for b, (s, t, _) in zip(base, tasks)
    ]


def render_sites(keys: list[str], indent: str) -> list[str]:
    return [
        f"{indent}Sites:",
        f"{indent}  Projection:",
        f"{indent}    Values: {','.join(keys)}",
    ]


def render_schedules(tasks: list[tuple[str, str, str]], indent: str) -> list[str]:
    out: list[str] = []
    for lid, (site, task, expr) in zip(logical_ids(tasks), tasks):
        out += _train_function_schedule(
            indent, lid, f"Nectar training task {task} of site {site} (config/nectar.toml)", expr,
            {"task": task, "site": site})
    return out


UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
DAY_S = 86400
# The site value the code uses for input whose site is unknown (dim::UNKNOWN_SITE in
# shared/platform/src/observe/names.rs): undecodable records are parked under it.
UNKNOWN_SITE = "_unknown"


def _cron_values(field: str, lo: int, hi: int) -> list[int] | None:
    """The values a cron minute or hour field takes (*, n, a-b, a,b, */n, a/n, a-b/n); None when
    the field uses anything else (then the caller assumes the next coarser interval)."""
    out: set[int] = set()
    for part in field.split(","):
        m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
        if not m:
            return None
        start = lo if m[1] == "*" else int(m[2])
        end = hi if m[1] == "*" else int(m[3]) if m[3] else (hi if m[4] else start)
        step = int(m[4]) if m[4] else 1
        if not (lo <= start <= end <= hi) or step < 1:
            return None
        out.update(range(start, end + 1, step))
    return sorted(out)


def interval_seconds(expr: str) -> int:
    """The longest time between two runs of a schedule. Exact for rate() and for cron() whose
    days are every day; a cron() limited to some days of the week or month counts as weekly or
    monthly (an alarm that waits longer rather than one that fires between two normal runs)."""
    rate = RATE_RE.match(expr)
    if rate:
        return int(rate["n"]) * UNIT_S[rate["unit"].rstrip("s")]
    minute, hour, dom, month, dow, _year = CRON_RE.match(expr)["fields"].split()
    if dom not in ("*", "?") or month != "*":
        return 31 * DAY_S
    if dow not in ("*", "?"):
        return 7 * DAY_S
    minutes, hours = _cron_values(minute, 0, 59), _cron_values(hour, 0, 23)
    if minutes is None or hours is None:
        return DAY_S
    times = [h * 60 + m for h in hours for m in minutes]
    gaps = [b - a for a, b in zip(times, times[1:])] + [times[0] + 1440 - times[-1]]
    return max(gaps) * 60


def alarm_window(interval_s: int) -> tuple[int, int]:
    """(Period, EvaluationPeriods) covering twice the interval within CloudWatch's limits: a
    period is at most a day here and the evaluated range at most 7 days (1 day below an hour)."""
    period = min(interval_s, DAY_S)
    periods = min(-(-2 * interval_s // period), 7 * DAY_S // period if period >= 3600 else DAY_S // period)
    return period, periods


def _metric(indent: str, mid: str, name: str, dims: dict[str, str], period: int | str, stat: str) -> list[str]:
    out = [
        f"{indent}- Id: {mid}",
        f"{indent}  ReturnData: false",
        f"{indent}  MetricStat:",
        f"{indent}    Period: {period}",
        f"{indent}    Stat: {stat}",
        f"{indent}    Metric:",
        f"{indent}      Namespace: Nectar",
        f"{indent}      MetricName: {name}",
        f"{indent}      Dimensions:",
    ]
    return out + [f"{indent}        - {{Name: {k}, Value: {v}}}" for k, v in dims.items()]


def _alarm(indent: str, lid: str, description: str, body: list[str]) -> list[str]:
    return [
        f"{indent}{lid}:",
        f"{indent}  Type: AWS::CloudWatch::Alarm",
        f"{indent}  Properties:",
        f"{indent}    AlarmDescription: >-",
        f"{indent}      {description}",
        *[f"{indent}    {line}" for line in body],
        f"{indent}    AlarmActions: [!Ref AlarmTopic]",
    ]


def _single(name: str, dims: dict[str, str], stat: str, period: int, periods: int, threshold: str, op: str,
            missing: str) -> list[str]:
    return [
        "Namespace: Nectar",
        f"MetricName: {name}",
        "Dimensions:",
        *[f"  - {{Name: {k}, Value: {v}}}" for k, v in dims.items()],
        f"Statistic: {stat}",
        f"Period: {period}",
        f"EvaluationPeriods: {periods}",
        f"DatapointsToAlarm: {periods}",
        f"Threshold: {threshold}",
        f"ComparisonOperator: {op}",
        f"TreatMissingData: {missing}",
    ]


def _math(expression: str, label: str, metrics: list[tuple[str, str, dict[str, str], str]], period: int,
          periods: int, to_alarm: int, threshold: str, op: str) -> list[str]:
    out = ["Metrics:"]
    for mid, name, dims, stat in metrics:
        out += _metric("  ", mid, name, dims, period, stat)
    return out + [
        "  - Id: e",
        f"    Label: {label}",
        f'    Expression: "{expression}"',
        "    ReturnData: true",
        f"EvaluationPeriods: {periods}",
        f"DatapointsToAlarm: {to_alarm}",
        f"Threshold: {threshold}",
        f"ComparisonOperator: {op}",
        # Every input is FILLed or divides: no data means no traffic (or no run), not a fault.
        "TreatMissingData: notBreaching",
    ]


def render_alarms(keys: list[str], tasks: list[tuple[str, str, str]], indent: str) -> list[str]:
    out: list[str] = []
    sites = [(k, "", "") for k in keys]
    for (site, _, _), sid in zip(sites, logical_ids(sites, "")):
        at = {"site": site}
        out += _alarm(indent, f"FallbackShareAlarm{sid}",
                      f"site {site}: more than FallbackShareAlarmThreshold of the recommendation answers came from a"
                      " fallback for 15 minutes (model missing or failing, cold users)",
                      _math("FILL(fallbacks, 0) / requests", "fallback share",
                            [("fallbacks", "recommend_fallbacks", at, "Sum"),
                             ("requests", "recommend_requests", at, "Sum")],
                            300, 3, 3, "!Ref FallbackShareAlarmThreshold", "GreaterThanThreshold"))
        out += _alarm(indent, f"CollectRejectionAlarm{sid}",
                      f"site {site}: collect refused more than CollectRejectionAlarmThreshold of what it received in 5"
                      " minutes (an app release sending bad events, or a config change refusing them)",
                      _math("FILL(rejected, 0) / (FILL(accepted, 0) + FILL(rejected, 0))", "rejected share",
                            [("rejected", "collect_payloads_rejected", at, "Sum"),
                             ("accepted", "collect_events_accepted", at, "Sum")],
                            300, 1, 1, "!Ref CollectRejectionAlarmThreshold", "GreaterThanThreshold"))
        out += _alarm(indent, f"ArchiveLagAlarm{sid}",
                      f"site {site}: the newest event archive wrote was older than ArchiveLagThresholdSeconds for 15"
                      " minutes (archive behind, or events arriving late)",
                      _single("archive_lag_seconds", at, "Maximum", 300, 3, "!Ref ArchiveLagThresholdSeconds",
                              "GreaterThanThreshold", "notBreaching"))
        out += _alarm(indent, f"ServedLogDroppedAlarm{sid}",
                      f"site {site}: recommend could not log recommendation_served events (the online report"
                      " under-counts)",
                      _single("served_log_dropped", at, "Sum", 300, 1, "0", "GreaterThanThreshold", "notBreaching"))
    parked = keys + [UNKNOWN_SITE]
    for site, sid in zip(parked, logical_ids([(k, "", "") for k in parked], "")):
        out += _alarm(indent, f"ParkedRecordsAlarm{sid}",
                      f"site {site}: archive parked records it could not decode or write (see parked/ in the bucket)",
                      _single("archive_records_parked", {"site": site}, "Sum", 300, 1, "0", "GreaterThanThreshold",
                              "notBreaching"))
    for tid, (site, task, expr) in zip(logical_ids(tasks, ""), tasks):
        period, periods = alarm_window(interval_seconds(expr))
        at = {"site": site, "task": task}
        out += _alarm(indent, f"ModelStaleAlarm{tid}",
                      f"site {site}, task {task}: no version published for twice its schedule {expr}"
                      " (refused or failed runs, or none started); recommend serves an ageing model or a fallback",
                      _single("train_runs", {**at, "status": "published"}, "Sum", period, periods, "1",
                              "LessThanThreshold", "breaching"))
        out += _alarm(indent, f"TrainingFailingAlarm{tid}",
                      f"site {site}, task {task}: two runs in a row were refused by the quality gate or failed,"
                      " with no version published between them",
                      _math("IF(FILL(published, 0) == 0 AND (FILL(refused, 0) + FILL(failed, 0)) > 0, 1, 0)",
                            "refused or failed, none published",
                            [(s, "train_runs", {**at, "status": s}, "Sum") for s in ("published", "refused", "failed")],
                            period, periods, 2, "1", "GreaterThanOrEqualToThreshold"))
    return out


# EMR Serverless release of the Spark application (Spark 3.5.6); the job is tested on PyPI
# pyspark of jobs/spark/requirements.txt. Change both together.
SPARK_RELEASE_LABEL = "emr-7.11.0"
# What the job run gets (jobs/spark/README.md "Deploy"): the script, the config and the packed
# Python environment (Python 3.11 for tomllib, numpy) are uploaded under this prefix.
SPARK_JOB_PREFIX = "jobs/spark/"
SPARK_ARTIFACTS_PREFIX = "artifacts/"


def read_spark_tasks(path: Path) -> list[tuple[str, str, str | None]]:
    """The sorted (site, task, schedule or None) of the tasks with engine = "spark"."""
    with path.open("rb") as f:
        cfg = tomllib.load(f)
    out = []
    for site, site_cfg in sorted(cfg.get("sites", {}).items()):
        for task, task_cfg in sorted((site_cfg.get("tasks") or {}).items()):
            where = f"sites.{site}.tasks.{task}"
            engine = task_cfg.get("engine", "native")
            if engine not in ("native", "spark"):
                raise ConfigError(f"{where}.engine: native or spark, not {engine!r}")
            if engine != "spark":
                continue
            if task_cfg.get("algorithm") != "als":
                raise ConfigError(f'{where}.engine: "spark" trains ALS only (algorithm = "als")')
            expr = task_cfg.get("schedule")
            out.append((site, task, check_schedule(expr, where) if expr is not None else None))
    return out


def _spark_definition() -> list[str]:
    """The state machine: the Spark job run (waiting for it: .sync), then the train function's
    publish job on the run's artifacts. Input: {"site", "task"}."""
    submit = (
        f"--conf spark.archives=s3://${{Bucket}}/{SPARK_JOB_PREFIX}pyspark_env.tar.gz#environment"
        " --conf spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON=./environment/bin/python"
        " --conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON=./environment/bin/python"
        " --conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python"
    )
    out = f"s3://${{Bucket}}/{SPARK_ARTIFACTS_PREFIX}site={{}}/task={{}}/run={{}}/"
    return [
        "Comment: Nectar spark task - EMR Serverless ALS job, then publish its artifacts",
        "StartAt: Train",
        "States:",
        "  Train:",
        "    Type: Task",
        "    Resource: arn:aws:states:::emr-serverless:startJobRun.sync",
        "    Parameters:",
        "      ApplicationId: ${ApplicationId}",
        "      ExecutionRoleArn: ${JobRoleArn}",
        "      Name.$: States.Format('{}-{}', $.site, $.task)",
        "      ExecutionTimeoutMinutes: 240",
        "      JobDriver:",
        "        SparkSubmit:",
        f"          EntryPoint: s3://${{Bucket}}/{SPARK_JOB_PREFIX}nectar_als.py",
        "          EntryPointArguments.$: >-",
        "            States.Array('--events', 's3://${Bucket}/', '--site', $.site, '--task', $.task,",
        f"            '--config', 's3://${{Bucket}}/{SPARK_JOB_PREFIX}nectar.toml', '--out',",
        f"            States.Format('{out}', $.site, $.task, $$.Execution.Name))",
        f"          SparkSubmitParameters: '{submit}'",
        "    ResultPath: null",
        "    Next: Publish",
        "  Publish:",
        "    Type: Task",
        "    Resource: arn:aws:states:::lambda:invoke",
        "    Parameters:",
        "      FunctionName: ${TrainFunctionArn}",
        "      Payload:",
        "        site.$: $.site",
        "        task.$: $.task",
        "        job: publish",
        f"        artifacts.$: States.Format('{out}', $.site, $.task, $$.Execution.Name)",
        "    End: true",
    ]


def render_spark(spark: list[tuple[str, str, str | None]], indent: str) -> list[str]:
    """The spark resources (none without spark tasks); see the module docstring."""
    if not spark:
        return []
    i = indent
    bucket_arn = "${EventBucket.Arn}"
    lines = [
        f"{i}SparkApplication:",
        f"{i}  Type: AWS::EMRServerless::Application",
        f"{i}  Properties:",
        f"{i}    Name: !Sub nectar-spark-${{AWS::StackName}}",
        f"{i}    ReleaseLabel: {SPARK_RELEASE_LABEL}",
        f"{i}    Type: SPARK",
        f"{i}    Architecture: ARM64",
        f"{i}    AutoStartConfiguration: {{Enabled: true}}",
        f"{i}    AutoStopConfiguration: {{Enabled: true, IdleTimeoutMinutes: 15}}",
        f"{i}    MaximumCapacity: {{Cpu: 64 vCPU, Memory: 256 GB, Disk: 1000 GB}}",
        "",
        # The job reads the event log (raw and compacted) and its own files, and writes
        # artifacts/ only: nothing else of the bucket, no other service.
        f"{i}SparkJobRole:",
        f"{i}  Type: AWS::IAM::Role",
        f"{i}  Properties:",
        f"{i}    AssumeRolePolicyDocument:",
        f'{i}      Version: "2012-10-17"',
        f"{i}      Statement:",
        f"{i}        - Effect: Allow",
        f"{i}          Principal: {{Service: emr-serverless.amazonaws.com}}",
        f"{i}          Action: sts:AssumeRole",
        f"{i}          Condition:",
        f"{i}            StringEquals:",
        f"{i}              aws:SourceAccount: !Ref AWS::AccountId",
        f"{i}    Policies:",
        f"{i}      - PolicyName: spark-job",
        f"{i}        PolicyDocument:",
        f'{i}          Version: "2012-10-17"',
        f"{i}          Statement:",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [s3:ListBucket]",
        f"{i}              Resource: !GetAtt EventBucket.Arn",
        f"{i}              Condition:",
        f"{i}                StringLike:",
        f"{i}                  s3:prefix: [events/, events/*, compacted/, compacted/*, {SPARK_ARTIFACTS_PREFIX}*]",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [s3:GetObject]",
        f"{i}              Resource:",
        f"{i}                - !Sub {bucket_arn}/events/*",
        f"{i}                - !Sub {bucket_arn}/compacted/*",
        f"{i}                - !Sub {bucket_arn}/{SPARK_JOB_PREFIX}*",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [s3:PutObject]",
        f"{i}              Resource: !Sub {bucket_arn}/{SPARK_ARTIFACTS_PREFIX}*",
        f"{i}      - !If",
        f"{i}        - HasKmsKey",
        f"{i}        - PolicyName: kms",
        f"{i}          PolicyDocument:",
        f'{i}            Version: "2012-10-17"',
        f"{i}            Statement:",
        f"{i}              - Effect: Allow",
        f"{i}                Action: [kms:Decrypt, kms:GenerateDataKey]",
        f"{i}                Resource: !Ref KmsKeyArn",
        f"{i}                Condition:",
        f"{i}                  StringEquals:",
        f'{i}                    kms:ViaService: !Sub "s3.${{AWS::Region}}.amazonaws.com"',
        f"{i}        - !Ref AWS::NoValue",
        "",
        # Publish reads the artifacts the job wrote (the train function's own role).
        f"{i}SparkArtifactsReadPolicy:",
        f"{i}  Type: AWS::IAM::RolePolicy",
        f"{i}  Properties:",
        f"{i}    RoleName: !Ref TrainRole",
        f"{i}    PolicyName: spark-artifacts",
        f"{i}    PolicyDocument:",
        f'{i}      Version: "2012-10-17"',
        f"{i}      Statement:",
        f"{i}        - Effect: Allow",
        f"{i}          Action: [s3:ListBucket]",
        f"{i}          Resource: !GetAtt EventBucket.Arn",
        f"{i}          Condition:",
        f"{i}            StringLike:",
        f"{i}              s3:prefix: [{SPARK_ARTIFACTS_PREFIX}*]",
        f"{i}        - Effect: Allow",
        f"{i}          Action: [s3:GetObject]",
        f"{i}          Resource: !Sub {bucket_arn}/{SPARK_ARTIFACTS_PREFIX}*",
        "",
        f"{i}SparkStateMachineLogGroup:",
        f"{i}  Type: AWS::Logs::LogGroup",
        f"{i}  Metadata: *LogGroupCheckov",
        f"{i}  DeletionPolicy: Delete",
        f"{i}  UpdateReplacePolicy: Delete",
        f"{i}  Properties:",
        f"{i}    LogGroupName: !Sub /aws/vendedlogs/states/nectar-spark-${{AWS::StackName}}",
        f"{i}    RetentionInDays: !Ref LogRetentionDays",
        f"{i}    KmsKeyId: !If [HasKmsKey, !Ref KmsKeyArn, !Ref AWS::NoValue]",
        "",
        f"{i}SparkStateMachineRole:",
        f"{i}  Type: AWS::IAM::Role",
        f"{i}  Properties:",
        f"{i}    AssumeRolePolicyDocument:",
        f'{i}      Version: "2012-10-17"',
        f"{i}      Statement:",
        f"{i}        - Effect: Allow",
        f"{i}          Principal: {{Service: states.amazonaws.com}}",
        f"{i}          Action: sts:AssumeRole",
        f"{i}          Condition:",
        f"{i}            StringEquals:",
        f"{i}              aws:SourceAccount: !Ref AWS::AccountId",
        f"{i}    Policies:",
        f"{i}      - PolicyName: spark-train",
        f"{i}        PolicyDocument:",
        f'{i}          Version: "2012-10-17"',
        f"{i}          Statement:",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [emr-serverless:StartJobRun]",
        f"{i}              Resource: !GetAtt SparkApplication.Arn",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [emr-serverless:GetJobRun, emr-serverless:CancelJobRun]",
        f"{i}              Resource: !Sub ${{SparkApplication.Arn}}/jobruns/*",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [iam:PassRole]",
        f"{i}              Resource: !GetAtt SparkJobRole.Arn",
        f"{i}              Condition:",
        f"{i}                StringEquals:",
        f"{i}                  iam:PassedToService: emr-serverless.amazonaws.com",
        # .sync waits on the job through this managed EventBridge rule.
        f"{i}            - Effect: Allow",
        f"{i}              Action: [events:PutTargets, events:PutRule, events:DescribeRule]",
        f"{i}              Resource: !Sub arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/StepFunctionsGetEventsForEMRServerlessJobRule",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [lambda:InvokeFunction]",
        f"{i}              Resource:",
        f"{i}                - !GetAtt TrainFunction.Arn",
        f"{i}                - !Sub ${{TrainFunction.Arn}}:*",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [xray:PutTraceSegments, xray:PutTelemetryRecords]",
        f'{i}              Resource: "*"',
        # Step Functions' log delivery actions take no resource (AWS requires "*").
        f"{i}            - Effect: Allow",
        f"{i}              Action:",
        f"{i}                - logs:CreateLogDelivery",
        f"{i}                - logs:GetLogDelivery",
        f"{i}                - logs:UpdateLogDelivery",
        f"{i}                - logs:DeleteLogDelivery",
        f"{i}                - logs:ListLogDeliveries",
        f"{i}                - logs:PutResourcePolicy",
        f"{i}                - logs:DescribeResourcePolicies",
        f"{i}                - logs:DescribeLogGroups",
        f'{i}              Resource: "*"',
        "",
        f"{i}SparkTrainStateMachine:",
        f"{i}  Type: AWS::StepFunctions::StateMachine",
        f"{i}  Properties:",
        f"{i}    StateMachineType: STANDARD",
        f"{i}    RoleArn: !GetAtt SparkStateMachineRole.Arn",
        f"{i}    TracingConfiguration: {{Enabled: true}}",
        f"{i}    LoggingConfiguration:",
        f"{i}      Level: ERROR",
        f"{i}      IncludeExecutionData: false",
        f"{i}      Destinations:",
        f"{i}        - CloudWatchLogsLogGroup: {{LogGroupArn: !GetAtt SparkStateMachineLogGroup.Arn}}",
        f"{i}    DefinitionSubstitutions:",
        f"{i}      ApplicationId: !Ref SparkApplication",
        f"{i}      JobRoleArn: !GetAtt SparkJobRole.Arn",
        f"{i}      Bucket: !Ref EventBucket",
        f"{i}      TrainFunctionArn: !GetAtt TrainFunction.Arn",
        f"{i}    Definition:",
        *[f"{i}      {line}" for line in _spark_definition()],
        "",
        f"{i}SparkSchedulerRole:",
        f"{i}  Type: AWS::IAM::Role",
        f"{i}  Properties:",
        f"{i}    AssumeRolePolicyDocument:",
        f'{i}      Version: "2012-10-17"',
        f"{i}      Statement:",
        f"{i}        - Effect: Allow",
        f"{i}          Principal: {{Service: scheduler.amazonaws.com}}",
        f"{i}          Action: sts:AssumeRole",
        f"{i}          Condition:",
        f"{i}            StringEquals:",
        f"{i}              aws:SourceAccount: !Ref AWS::AccountId",
        f"{i}    Policies:",
        f"{i}      - PolicyName: start-spark-train",
        f"{i}        PolicyDocument:",
        f'{i}          Version: "2012-10-17"',
        f"{i}          Statement:",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [states:StartExecution]",
        f"{i}              Resource: !Ref SparkTrainStateMachine",
        f"{i}            - Effect: Allow",
        f"{i}              Action: [sqs:SendMessage]",
        f"{i}              Resource: !GetAtt TrainDlq.Arn",
        f"{i}      - !If",
        f"{i}        - HasKmsKey",
        f"{i}        - PolicyName: kms",
        f"{i}          PolicyDocument:",
        f'{i}            Version: "2012-10-17"',
        f"{i}            Statement:",
        f"{i}              - Effect: Allow",
        f"{i}                Action: [kms:Decrypt, kms:GenerateDataKey]",
        f"{i}                Resource: !Ref KmsKeyArn",
        f"{i}                Condition:",
        f"{i}                  StringEquals:",
        f'{i}                    kms:ViaService: !Sub "sqs.${{AWS::Region}}.amazonaws.com"',
        f"{i}        - !Ref AWS::NoValue",
    ]
    scheduled = [(s, t, e) for s, t, e in spark if e]
    for lid, (site, task, expr) in zip(logical_ids(scheduled, "SparkSchedule"), scheduled):
        payload = json.dumps({"site": site, "task": task}, separators=(",", ":"))
        lines += [
            "",
            f"{i}{lid}:",
            f"{i}  Type: AWS::Scheduler::Schedule",
            f"{i}  Properties:",
            f"{i}    Description: Nectar spark task {task} of site {site} (config/nectar.toml)",
            f"{i}    ScheduleExpression: {expr}",
            f"{i}    ScheduleExpressionTimezone: UTC",
            f"{i}    FlexibleTimeWindow:",
            f'{i}      Mode: "OFF"',
            f"{i}    State: !Ref TrainingSchedulesState",
            f"{i}    Target:",
            f"{i}      Arn: !Ref SparkTrainStateMachine",
            f"{i}      RoleArn: !GetAtt SparkSchedulerRole.Arn",
            f"{i}      Input: '{payload}'",
            f"{i}      RetryPolicy:",
            f"{i}        MaximumRetryAttempts: {RETRY_ATTEMPTS}",
            f"{i}        MaximumEventAgeInSeconds: {RETRY_MAX_AGE_S}",
            f"{i}      DeadLetterConfig:",
            f"{i}        Arn: !GetAtt TrainDlq.Arn",
        ]
    return lines


def replace_block(text: str, name: str, render) -> str:
    begin, end = MARKER.format(edge="BEGIN", name=name), MARKER.format(edge="END", name=name)
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(begin)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(end)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ConfigError(f"template: expected one '{begin}' line followed by one '{end}' line")
    indent = lines[starts[0]][: len(lines[starts[0]]) - len(lines[starts[0]].lstrip())]
    return "\n".join(lines[: starts[0] + 1] + render(indent) + lines[ends[0] :])


def generate(config: Path, template_text: str) -> str:
    keys, tasks = read_config(config)
    text = replace_block(template_text, "sites", lambda ind: render_sites(keys, ind))
    reports = read_reports(config)
    text = replace_block(
        text,
        "schedules",
        lambda ind: render_schedules(tasks, ind)
        + render_report_schedules(reports, ind)
        + render_compact_schedules(keys, ind),
    )
    spark = read_spark_tasks(config)
    text = replace_block(text, "spark", lambda ind: render_spark(spark, ind))
    # A scheduled spark task publishes through the train function too: the same alarms apply.
    alarmed = sorted(tasks + [(s, t, e) for s, t, e in spark if e])
    return replace_block(text, "alarms", lambda ind: render_alarms(keys, alarmed, ind))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "nectar.toml")
    ap.add_argument("--template", type=Path, default=ROOT / "infra" / "template.yaml")
    ap.add_argument("--check", action="store_true", help="fail (exit 1) when the template is not up to date")
    args = ap.parse_args(argv)
    try:
        current = args.template.read_text()
        wanted = generate(args.config, current)
    except (ConfigError, OSError) as e:
        print(f"gen_schedules: {e}", file=sys.stderr)
        return 2
    if current == wanted:
        print(f"gen_schedules: {args.template} is up to date with {args.config}")
        return 0
    if args.check:
        sys.stderr.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                fromfile=f"{args.template} (committed)",
                tofile=f"{args.template} (from {args.config})",
            )
        )
        print(
            f"gen_schedules: {args.template} disagrees with {args.config}; run python3 infra/gen_schedules.py",
            file=sys.stderr,
        )
        return 1
    args.template.write_text(wanted)
    print(f"gen_schedules: rewrote the generated blocks of {args.template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
