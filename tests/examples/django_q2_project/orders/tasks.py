"""Background work of the shop, queued with async_task and schedule."""

from django.utils import timezone

from .models import Order


def mark_paid(order_id):
    order = Order.objects.get(pk=order_id)
    order.paid = True
    order.paid_at = timezone.now()
    order.save(update_fields=["paid", "paid_at"])
    return f"order {order.pk} paid"


def send_receipt(task):
    """Hook of mark_paid: runs with the finished task."""
    if task.success:
        Order.objects.filter(pk=task.args[0]).update(receipt_sent=True)


def remind_unpaid():
    return Order.objects.filter(paid=False).count()
