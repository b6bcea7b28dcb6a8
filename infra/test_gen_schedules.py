#!/usr/bin/env python3
"""Tests of infra/gen_schedules.py on temporary copies of the template and config."""

import contextlib
import io
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_schedules  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class GenSchedulesTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.template = self.dir / "template.yaml"
        self.config = self.dir / "nectar.toml"
        shutil.copy(ROOT / "infra" / "template.yaml", self.template)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_gen(self, *extra):
        # The generator's messages (errors and diffs, on purpose here) are shown marked as
        # expected, so that they are not mistaken for a failure in the output of make test.
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = gen_schedules.main(["--config", str(self.config), "--template", str(self.template), *extra])
        lines = out.getvalue().splitlines()
        shown = lines if len(lines) <= 3 else lines[:2] + [f"... ({len(lines) - 2} more lines)"]
        for line in shown:
            print(f"expected| {line}")
        return code

    def test_new_task_is_a_mismatch_until_regenerated(self):
        # GIVEN a config with a second site and an hourly cron task
        self.config.write_text(
            '[sites.demo.tasks.als]\nschedule = "rate(6 hours)"\n'
            '[sites.radio-one.tasks.item_knn]\nschedule = "cron(15 * * * ? *)"\n'
            '[sites.radio-one.tasks.manual]\nalgorithm = "als"\n'
        )
        # WHEN checked, THEN it disagrees; WHEN generated, THEN the check passes
        self.assertEqual(self.run_gen("--check"), 1)
        self.assertEqual(self.run_gen(), 0)
        self.assertEqual(self.run_gen("--check"), 0)
        text = self.template.read_text()
        self.assertIn("TrainScheduleRadioOneItemKnn:", text)
        self.assertIn("ScheduleExpression: cron(15 * * * ? *)", text)
        self.assertIn('Input: \'{"task":"item_knn","site":"radio-one"}\'', text)
        self.assertIn("Values: demo,radio-one", text)
        # every schedule retries a refused invocation, then leaves it in the dead-letter queue
        block = text.split("TrainScheduleRadioOneItemKnn:")[1].split("# END GENERATED schedules")[0]
        self.assertIn("RetryPolicy:\n          MaximumRetryAttempts: 3\n          MaximumEventAgeInSeconds: 900", block)
        self.assertIn("DeadLetterConfig:\n          Arn: !GetAtt TrainDlq.Arn", block)
        self.assertNotIn("Manual", text)  # no schedule, no resource

    def test_a_site_report_gets_its_schedule_on_the_train_function(self):
        # GIVEN a site declaring a daily report and one without a report
        self.config.write_text(
            '[sites.demo.report]\nschedule = "rate(1 day)"\n'
            '[sites.radio-one.tasks.als]\nschedule = "rate(6 hours)"\n'
        )
        # WHEN generated THEN one report schedule, invoking train with the report job
        self.assertEqual(self.run_gen(), 0)
        text = self.template.read_text()
        self.assertIn("ReportScheduleDemo:", text)
        self.assertNotIn("ReportScheduleRadioOne", text)
        block = text.split("ReportScheduleDemo:")[1].split("# END GENERATED schedules")[0]
        self.assertIn('Input: \'{"site":"demo","job":"report"}\'', block)
        self.assertIn("DeadLetterConfig:\n          Arn: !GetAtt TrainDlq.Arn", block)
        # AND a report without a schedule names the place
        self.config.write_text('[sites.demo.report]\ndays = 7\n')
        self.assertEqual(self.run_gen(), 2)

    def test_every_site_gets_a_daily_compaction_schedule(self):
        # GIVEN two sites, one without any task or report
        self.config.write_text(
            '[sites.demo.tasks.als]\nschedule = "rate(6 hours)"\n[sites.radio-one]\nweights = {}\n'
        )
        # WHEN generated THEN each site's event log is compacted daily by the train function
        self.assertEqual(self.run_gen(), 0)
        text = self.template.read_text()
        for lid, site in [("CompactScheduleDemo", "demo"), ("CompactScheduleRadioOne", "radio-one")]:
            block = text.split(f"{lid}:")[1].split("# END GENERATED schedules")[0].split("Schedule:")[0]
            self.assertIn("ScheduleExpression: cron(30 1 * * ? *)", block)
            self.assertIn("Arn: !GetAtt TrainFunction.Arn", block)
            self.assertIn(f'Input: \'{{"site":"{site}","job":"compact"}}\'', block)
            self.assertIn("DeadLetterConfig:\n          Arn: !GetAtt TrainDlq.Arn", block)

    def test_invalid_schedules_name_the_place(self):
        for bad, why in [
            ('"rate(1 hours)"', "singular"),
            ('"rate(6 hour)"', "singular"),
            ('"cron(0 3 * * *)"', "6 fields"),
            ('"cron(0 3 * * 1 *)"', "'?'"),
            ('"every day"', "neither"),
        ]:
            self.config.write_text(f"[sites.demo.tasks.als]\nschedule = {bad}\n")
            with self.assertRaises(gen_schedules.ConfigError) as e:
                gen_schedules.read_config(self.config)
            self.assertIn("sites.demo.tasks.als.schedule", str(e.exception))
            self.assertIn(why, str(e.exception))
            self.assertEqual(self.run_gen("--check"), 2)

    def test_colliding_logical_ids_get_a_suffix(self):
        ids = gen_schedules.logical_ids([("a-b", "t", "rate(1 day)"), ("a_b", "t", "rate(1 day)")])
        self.assertEqual(len(set(ids)), 2)
        self.assertTrue(all(i.startswith("TrainScheduleABT") for i in ids))

    def test_new_site_and_task_get_their_alarms(self):
        # GIVEN a second site with a task every 15 minutes
        self.config.write_text(
            '[sites.demo.tasks.als]\nschedule = "rate(6 hours)"\n'
            '[sites.radio-one.tasks.item_knn]\nschedule = "cron(0/15 * * * ? *)"\n'
        )
        # WHEN generated, THEN the site has its own alarms and the task its staleness and failure alarms
        self.assertEqual(self.run_gen(), 0)
        text = self.template.read_text()
        block = text.split("# BEGIN GENERATED alarms")[1].split("# END GENERATED alarms")[0]
        for lid in ("FallbackShareAlarmRadioOne:", "CollectRejectionAlarmRadioOne:", "ArchiveLagAlarmRadioOne:",
                    "ServedLogDroppedAlarmRadioOne:", "ParkedRecordsAlarmRadioOne:", "ParkedRecordsAlarmUnknown:",
                    "ModelStaleAlarmRadioOneItemKnn:", "TrainingFailingAlarmRadioOneItemKnn:", "ModelStaleAlarmDemoAls:"):
            self.assertIn(lid, block)
        stale = block.split("ModelStaleAlarmRadioOneItemKnn:")[1].split("TrainingFailingAlarm")[0]
        # twice 15 minutes: two 15-minute periods without a published run
        self.assertIn("Period: 900\n      EvaluationPeriods: 2\n      DatapointsToAlarm: 2", stale)
        self.assertIn("TreatMissingData: breaching", stale)
        # 4 per site, parked records per site and for _unknown, 2 per scheduled task
        self.assertEqual(block.count("AlarmActions: [!Ref AlarmTopic]"), 4 * 2 + 3 + 2 * 2)

    def test_schedule_intervals(self):
        for expr, want in [
            ("rate(1 minute)", 60), ("rate(6 hours)", 6 * 3600), ("rate(2 days)", 2 * 86400),
            ("cron(0 3 * * ? *)", 86400), ("cron(15 * * * ? *)", 3600), ("cron(0/15 * * * ? *)", 900),
            ("cron(0 0,6 * * ? *)", 18 * 3600), ("cron(0 */4 * * ? *)", 4 * 3600),
            ("cron(0 9 ? * MON-FRI *)", 7 * 86400), ("cron(0 3 1 * ? *)", 31 * 86400),
            ("cron(0 L * * ? *)", 86400),  # a form not parsed here: at least a day
        ]:
            self.assertEqual(gen_schedules.interval_seconds(expr), want, expr)

    def test_alarm_windows_stay_within_cloudwatch_limits(self):
        for interval, want in [(900, (900, 2)), (3600, (3600, 2)), (86400, (86400, 2)),
                               (2 * 86400, (86400, 4)), (31 * 86400, (86400, 7))]:
            period, periods = gen_schedules.alarm_window(interval)
            self.assertEqual((period, periods), want, interval)
            self.assertEqual(period % 60, 0)
            self.assertLessEqual(period * periods, 86400 if period < 3600 else 7 * 86400)

    def test_unknown_site_value_is_reserved(self):
        self.config.write_text('[sites._unknown.tasks.als]\nschedule = "rate(1 day)"\n')
        with self.assertRaises(gen_schedules.ConfigError):
            gen_schedules.read_config(self.config)

    def test_bad_site_key(self):
        self.config.write_text('[sites.Demo.tasks.als]\nschedule = "rate(1 day)"\n')
        with self.assertRaises(gen_schedules.ConfigError):
            gen_schedules.read_config(self.config)


if __name__ == "__main__":
    unittest.main()
