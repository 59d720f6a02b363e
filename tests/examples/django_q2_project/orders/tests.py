# The project's own suite, run by Django's (unittest) runner: its assert methods are the idiom.
# ruff: noqa: PT009
from django.test import TestCase
from django_q.models import Failure, Schedule, Task
from django_q.tasks import async_task, count_group, fetch, fetch_group, result, schedule

from .models import Order


class PaymentTests(TestCase):
    def test_mark_paid_runs_and_its_task_is_stored(self):
        order = Order.objects.create(customer="Ada", total="12.50")

        task_id = async_task("orders.tasks.mark_paid", order.pk, hook="orders.tasks.send_receipt")

        self.assertEqual(result(task_id), f"order {order.pk} paid")
        task = fetch(task_id)
        self.assertIsInstance(task, Task)
        self.assertTrue(task.success)
        self.assertEqual(task.func, "orders.tasks.mark_paid")
        order.refresh_from_db()
        self.assertTrue(order.paid)
        self.assertIsNotNone(order.paid_at)
        self.assertTrue(order.receipt_sent)

    def test_a_group_of_payments_with_one_failure(self):
        orders = [Order.objects.create(customer=name, total="5.00") for name in ("Bo", "Cy", "Di")]
        for order in orders:
            async_task("orders.tasks.mark_paid", order.pk, group="monday")
        missing = async_task("orders.tasks.mark_paid", 999_999, group="monday")

        self.assertEqual(count_group("monday"), 4)
        self.assertEqual(count_group("monday", failures=True), 1)
        self.assertEqual(len(fetch_group("monday")), 4)
        paid = fetch_group("monday", failures=False)
        self.assertEqual(sorted(task.args[0] for task in paid), [order.pk for order in orders])
        self.assertFalse(Order.objects.filter(paid=False).exists())
        self.assertFalse(fetch(missing).success)
        self.assertIn("does not exist", fetch(missing).result)
        self.assertEqual(Failure.objects.filter(group="monday").count(), 1)

    def test_the_reminder_is_scheduled_daily(self):
        item = schedule(
            "orders.tasks.remind_unpaid",
            name="remind-unpaid",
            schedule_type=Schedule.DAILY,
            repeats=-1,
        )

        self.assertIsInstance(item, Schedule)
        stored = Schedule.objects.get(name="remind-unpaid")
        self.assertEqual((stored.func, stored.schedule_type), ("orders.tasks.remind_unpaid", "D"))
        self.assertIsNotNone(stored.next_run)
