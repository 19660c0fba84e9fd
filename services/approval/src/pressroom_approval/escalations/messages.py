"""The words of the notifications in each language a recipient may choose (en, es, fr, de).

The templates (``templates/*.j2``) hold the layout once; these hold the sentences. A missing
language falls back to English, a missing sentence cannot happen (a unit test checks every
language has every key).
"""

from __future__ import annotations

LANGUAGES = ("en", "es", "fr", "de")

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "subject_reminder": "Reminder: “{post}” is waiting for your approval",
        "subject_escalate": "Escalation: “{post}” has waited {hours} hours for approval",
        "greeting": "Hello {name},",
        "body_reminder": "The post “{post}” of {brand} has waited {hours} hours for a decision.",
        "body_escalate": "The post “{post}” of {brand} has waited {hours} hours for a decision "
        "and is escalated to you.",
        "platforms": "Platforms",
        "scheduled": "Planned for",
        "not_scheduled": "not scheduled",
        "action": "Review the post",
        "footer": "You receive this because you can decide approvals for {brand}.",
        "unsubscribe": "Unsubscribe from these emails",
        "unsubscribe_all": "Unsubscribe from all approval emails",
        "page_title": "Unsubscribe",
        "page_question_type": "Stop the “{type}” emails about approvals of {brand}?",
        "page_question_all": "Stop every approval email of {brand}?",
        "page_button": "Unsubscribe",
        "page_done_type": "You no longer receive the “{type}” emails of {brand}.",
        "page_done_all": "You no longer receive approval emails of {brand}.",
        "page_bad": "This unsubscribe link is not valid.",
        "page_unknown": "This unsubscribe link names nobody we send email to.",
    },
    "es": {
        "subject_reminder": "Recordatorio: «{post}» espera tu aprobación",
        "subject_escalate": "Escalado: «{post}» lleva {hours} horas esperando aprobación",
        "greeting": "Hola, {name}:",
        "body_reminder": "La publicación «{post}» de {brand} lleva {hours} horas esperando "
        "una decisión.",
        "body_escalate": "La publicación «{post}» de {brand} lleva {hours} horas esperando "
        "una decisión y se te ha escalado.",
        "platforms": "Plataformas",
        "scheduled": "Prevista para",
        "not_scheduled": "sin programar",
        "action": "Revisar la publicación",
        "footer": "Recibes este mensaje porque puedes decidir aprobaciones de {brand}.",
        "unsubscribe": "Darse de baja de estos correos",
        "unsubscribe_all": "Darse de baja de todos los correos de aprobación",
        "page_title": "Darse de baja",
        "page_question_type": "¿Dejar de recibir los correos «{type}» de {brand}?",
        "page_question_all": "¿Dejar de recibir todos los correos de aprobación de {brand}?",
        "page_button": "Darse de baja",
        "page_done_type": "Ya no recibirás los correos «{type}» de {brand}.",
        "page_done_all": "Ya no recibirás correos de aprobación de {brand}.",
        "page_bad": "Este enlace de baja no es válido.",
        "page_unknown": "Este enlace de baja no corresponde a ningún destinatario.",
    },
    "fr": {
        "subject_reminder": "Rappel : « {post} » attend votre approbation",
        "subject_escalate": "Escalade : « {post} » attend une approbation depuis {hours} heures",
        "greeting": "Bonjour {name},",
        "body_reminder": "La publication « {post} » de {brand} attend une décision depuis "
        "{hours} heures.",
        "body_escalate": "La publication « {post} » de {brand} attend une décision depuis "
        "{hours} heures et vous est transmise.",
        "platforms": "Plateformes",
        "scheduled": "Prévue pour",
        "not_scheduled": "non planifiée",
        "action": "Examiner la publication",
        "footer": "Vous recevez ce message car vous pouvez décider des approbations de {brand}.",
        "unsubscribe": "Se désabonner de ces e-mails",
        "unsubscribe_all": "Se désabonner de tous les e-mails d’approbation",
        "page_title": "Se désabonner",
        "page_question_type": "Ne plus recevoir les e-mails « {type} » de {brand} ?",
        "page_question_all": "Ne plus recevoir aucun e-mail d’approbation de {brand} ?",
        "page_button": "Se désabonner",
        "page_done_type": "Vous ne recevrez plus les e-mails « {type} » de {brand}.",
        "page_done_all": "Vous ne recevrez plus d’e-mails d’approbation de {brand}.",
        "page_bad": "Ce lien de désabonnement n’est pas valide.",
        "page_unknown": "Ce lien de désabonnement ne désigne aucun destinataire.",
    },
    "de": {
        "subject_reminder": "Erinnerung: „{post}“ wartet auf Ihre Freigabe",
        "subject_escalate": "Eskalation: „{post}“ wartet seit {hours} Stunden auf Freigabe",
        "greeting": "Hallo {name},",
        "body_reminder": "Der Beitrag „{post}“ von {brand} wartet seit {hours} Stunden auf "
        "eine Entscheidung.",
        "body_escalate": "Der Beitrag „{post}“ von {brand} wartet seit {hours} Stunden auf "
        "eine Entscheidung und wird an Sie eskaliert.",
        "platforms": "Plattformen",
        "scheduled": "Geplant für",
        "not_scheduled": "nicht geplant",
        "action": "Beitrag prüfen",
        "footer": "Sie erhalten diese Nachricht, weil Sie Freigaben für {brand} erteilen können.",
        "unsubscribe": "Diese E-Mails abbestellen",
        "unsubscribe_all": "Alle Freigabe-E-Mails abbestellen",
        "page_title": "Abbestellen",
        "page_question_type": "Die „{type}“-E-Mails von {brand} abbestellen?",
        "page_question_all": "Alle Freigabe-E-Mails von {brand} abbestellen?",
        "page_button": "Abbestellen",
        "page_done_type": "Sie erhalten die „{type}“-E-Mails von {brand} nicht mehr.",
        "page_done_all": "Sie erhalten keine Freigabe-E-Mails von {brand} mehr.",
        "page_bad": "Dieser Abmeldelink ist ungültig.",
        "page_unknown": "Dieser Abmeldelink nennt keinen Empfänger.",
    },
}


def words(language: str | None) -> dict[str, str]:
    return MESSAGES.get(language or "en", MESSAGES["en"])
