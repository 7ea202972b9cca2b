// Package zitadel follows a ZITADEL instance's truth about orgs, projects and apps into deact's mirrored layer: a
// Reconciler lists everything through ZITADEL's v1 REST APIs and writes only the differences, and a Webhook
// applies Actions v2 event deliveries at once, after checking ZITADEL's signature.
//
// Ordering: every mirrored record keeps the sequence of the ZITADEL event it reflects, and a write whose sequence
// is not newer than the stored one changes nothing. Since ZITADEL v2 event sequences count per aggregate, the
// comparison is only made between numbers of the same aggregate: an org record against the org aggregate's
// events (org.deactivated, ...; details.sequence of the org listing), a project record against its project
// aggregate, and an app record against its project's aggregate too (app events live on the project aggregate, and
// the app listing's details.sequence is the sequence of the last project-aggregate event the app projection
// reduced). A project's sequence never orders its apps, nor an org's its projects.
package zitadel
