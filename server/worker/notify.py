"""The notification jobs of a worker: the unread-reply mails and the on-call team's
mails and SMS it decides on itself, and the delivery of mail and SMS.

Built once per `Jobs` from the process's adapters and settings: the transport
(SMTP when `POMOC_SMTP_URL` is set, else the local mailbox), the mail settings,
the support calendar. Each job is a method taking `now`, like every job in
`server.worker.jobs`, and returns how many notifications it sent or queued.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
from redis.exceptions import RedisError

from server.chat.adapters import Adapters
from server.realtime.online import users_online
from server.rules.notices import replies_mail
from server.store.mailwatch import ReplyWatch
from server.store.notifications import NotificationStore
from server.store.oncall import fan_out
from server.worker.compose import MailSettings
from server.worker.mail import MailDelivery
from server.worker.sms import SmsDelivery, gateway_for
from server.worker.smtp import MailboxTransport, SmtpTransport, Transport

log = logging.getLogger(__name__)
# Replies older than this are not mailed any more (a worker that was down for a week
# does not send week-old news); at least a few delays, whatever POMOC_MAIL_DELAY is.
REPLY_LOOKBACK = timedelta(days=7)
# Escalations older than this are not paged any more (a team configured today is not
# woken for last week's).
ONCALL_LOOKBACK = timedelta(days=1)


def transport_for(a: Adapters, store: NotificationStore, mail: MailSettings) -> Transport:
    settings = a.settings
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, mail.envelope_from)
    return MailboxTransport(store, a.wall)


class Notifier:
    def __init__(self, a: Adapters, client: httpx.AsyncClient) -> None:
        self.a = a
        self.store = NotificationStore(a.engine)
        self.watch = ReplyWatch(a.engine)
        self.mail_settings = MailSettings.from_settings(a.settings)
        self.transport = transport_for(a, self.store, self.mail_settings)
        self.mail = MailDelivery(store=self.store, transport=self.transport, settings=self.mail_settings,
                                 calendar=a.rules.policy.calendar, tickets=a.tickets, messages=a.messages,
                                 wall=a.wall)
        gateway = gateway_for(a.settings)
        self.sms = (SmsDelivery(self.store, gateway, a.rules.policy.calendar, client, metrics=a.metrics)
                    if gateway else None)

    async def queue_replies(self, now: datetime) -> int:
        """One mail per ticket whose agent replies stayed unread for POMOC_MAIL_DELAY
        while its opener had no connection open (`server.rules.notices.replies_mail`)."""
        delay = self.a.settings.mail_delay
        pending = await self.watch.pending_replies(now - max(REPLY_LOOKBACK, 4 * delay), now)
        due = [p for p in pending
               if replies_mail(p.replies, p.read_seq, p.mailed_seq, False, now, delay).send]
        if not due:
            return 0
        online: dict[str, bool] | None
        try:
            online = await users_online(self.a.redis, self.a.keys, (p.reader for p in due), self.a.wall.now())
        except (RedisError, OSError, TimeoutError) as exc:
            # Presence unknown: mail anyway; what was read in the panel is still left out.
            log.warning("mail.presence_unknown", extra={"tickets": len(due), "error": str(exc) or repr(exc)})
            online = None
        queued = 0
        for p in due:
            decision = replies_mail(p.replies, p.read_seq, p.mailed_seq,
                                    None if online is None else online.get(p.reader, False), now, delay)
            if decision.send and await self.watch.queue_replies(p, decision.send, now):
                queued += 1
        return queued

    async def deliver_mail(self, now: datetime) -> int:
        done = await self.mail.deliver_due(now)
        if done.sent:
            self.a.metrics.mails.labels("sent").inc(done.sent)
        if done.failed:
            self.a.metrics.mails.labels("failed").inc(done.failed)
        if done.sent or done.failed:
            log.info("mail.delivered", extra={"sent": done.sent, "failed": done.failed, "dropped": done.dropped,
                                              "transport": self.transport.name})
        return done.sent

    async def page_oncall(self, now: datetime) -> int:
        """Every new escalation (`ticket.critical` at once, `sla.warning`, `sla.breached`)
        as a mail to each POMOC_ONCALL_EMAILS and an SMS to each POMOC_ONCALL_PHONES."""
        settings = self.a.settings
        return await fan_out(self.a.engine, now, now - ONCALL_LOOKBACK, settings.oncall_emails,
                             settings.oncall_phones)

    async def deliver_sms(self, now: datetime) -> int:
        return 0 if self.sms is None else await self.sms.deliver_due(now)
