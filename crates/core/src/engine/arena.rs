//! Where entities live: one arena per entity type, indexed by a `HashTable`
//! so that each id is stored once, and the interner of plans, regions and
//! quota resources. Slots and interned names are typed newtypes of `u32`
//! (`#[repr(transparent)]`, so as cheap as the bare numbers they replace): a
//! project slot cannot be used where an account slot or a region is meant.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use hashbrown::HashTable;

use super::EntityRef;
use crate::event::EntityType;
use crate::machine::{AccountState, DisputeState, ProjectState, State};
use crate::time::Timestamp;

/// A machine's state type, which names the arena of its entities.
pub(super) trait Tracked: Copy + Into<State> + 'static {
    /// The entity type whose states these are.
    const ENTITY_TYPE: EntityType;
}

impl Tracked for AccountState {
    const ENTITY_TYPE: EntityType = EntityType::Account;
}

impl Tracked for ProjectState {
    const ENTITY_TYPE: EntityType = EntityType::Project;
}

impl Tracked for DisputeState {
    const ENTITY_TYPE: EntityType = EntityType::Dispute;
}

/// The slot of one entity in the arena of its type: `Slot<ProjectState>` is
/// a project's. The traits are written out because derives would demand them
/// of `S` too.
#[repr(transparent)]
pub(super) struct Slot<S> {
    index: u32,
    machine: PhantomData<fn() -> S>,
}

/// An account's slot.
pub(super) type AccountSlot = Slot<AccountState>;
/// A project's slot.
pub(super) type ProjectSlot = Slot<ProjectState>;
/// A dispute's slot.
pub(super) type DisputeSlot = Slot<DisputeState>;

impl<S> Slot<S> {
    const fn new(index: u32) -> Slot<S> {
        Slot { index, machine: PhantomData }
    }
}

impl<S> Clone for Slot<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Slot<S> {}

impl<S> PartialEq for Slot<S> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl<S> Eq for Slot<S> {}

impl<S> PartialOrd for Slot<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<S> Ord for Slot<S> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index.cmp(&other.index)
    }
}

impl<S> Hash for Slot<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.index.hash(state);
    }
}

impl<S> fmt::Debug for Slot<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.index)
    }
}

impl<S: Tracked> From<Slot<S>> for EntityRef {
    fn from(slot: Slot<S>) -> EntityRef {
        EntityRef { entity_type: S::ENTITY_TYPE, index: slot.index }
    }
}

/// An interned plan, region or quota resource.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub(super) struct Name(u32);

impl Name {
    /// The least and greatest names, for ranges over keys that end in a name.
    pub(super) const MIN: Name = Name(0);
    pub(super) const MAX: Name = Name(u32::MAX);
}

/// Which visit of an entity to a state: bumped on every state entry, so a
/// deadline of an older visit is recognised as stale.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub(super) struct VisitId(u32);

impl VisitId {
    /// The first visit of an entity.
    #[cfg(test)]
    pub(super) const FIRST: VisitId = VisitId(1);
}

/// An optional slot or name in four bytes, `u32::MAX` meaning none: at a
/// million entities every byte of [`Entity`] is a megabyte.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(super) struct Packed<T> {
    raw: u32,
    value: PhantomData<T>,
}

/// What [`Packed`] can hold.
pub(super) trait Raw: Copy {
    fn raw(self) -> u32;
    fn from_raw(raw: u32) -> Self;
}

impl<S> Raw for Slot<S> {
    fn raw(self) -> u32 {
        self.index
    }
    fn from_raw(raw: u32) -> Self {
        Slot::new(raw)
    }
}

impl Raw for Name {
    fn raw(self) -> u32 {
        self.0
    }
    fn from_raw(raw: u32) -> Self {
        Name(raw)
    }
}

impl<T: Raw> Packed<T> {
    pub(super) const NONE: Packed<T> = Packed { raw: u32::MAX, value: PhantomData };

    pub(super) fn new(value: Option<T>) -> Packed<T> {
        Packed { raw: value.map_or(u32::MAX, Raw::raw), value: PhantomData }
    }

    pub(super) fn get(self) -> Option<T> {
        (self.raw != u32::MAX).then(|| T::from_raw(self.raw))
    }
}

/// An entity id: inline when it fits (almost all do), so that looking an
/// entity up touches one cache line less and costs no allocation.
#[derive(Clone, Debug)]
enum EntityId {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl EntityId {
    fn new(id: &str) -> EntityId {
        let mut bytes = [0u8; 22];
        match bytes.get_mut(..id.len()) {
            Some(prefix) => {
                prefix.copy_from_slice(id.as_bytes());
                EntityId::Inline { len: id.len() as u8, bytes }
            }
            None => EntityId::Heap(id.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            EntityId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            EntityId::Heap(id) => id.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Always a copy of a `&str`, so this cannot fail.
            EntityId::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            EntityId::Heap(id) => id,
        }
    }
}

/// One entity, kept small: at a million entities every byte here is a megabyte.
#[derive(Clone, Debug)]
pub(super) struct Entity<S> {
    id: EntityId,
    pub(super) entered_at: Timestamp,
    pub(super) visit: VisitId,
    /// Projects and disputes: the account they belong to, if known.
    pub(super) account: Packed<AccountSlot>,
    /// Projects: `project.requested` region; accounts: `account.created` region.
    pub(super) region: Packed<Name>,
    /// Accounts: the plan.
    pub(super) plan: Packed<Name>,
    /// Accounts: live projects that name this account.
    pub(super) live_projects: u32,
    pub(super) state: Option<S>,
}

// The typed fields cost nothing over the bare numbers they replaced: an
// entity is still 56 bytes (an inline id of up to 22 bytes included).
const _: () = assert!(size_of::<Entity<ProjectState>>() == 56);

impl<S> Entity<S> {
    pub(super) fn id(&self) -> &str {
        self.id.as_str()
    }

    /// Starts a new visit at `at` and returns it.
    fn enter(&mut self, at: Timestamp) -> VisitId {
        self.entered_at = at;
        self.visit = VisitId(self.visit.0.wrapping_add(1));
        self.visit
    }
}

/// Entities of one type, by id, without storing the id twice.
pub(super) struct Arena<S> {
    items: Vec<Entity<S>>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl<S> Default for Arena<S> {
    fn default() -> Self {
        Arena { items: Vec::new(), index: HashTable::new(), hasher: foldhash::fast::RandomState::default() }
    }
}

impl<S> Arena<S> {
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The slot `entity` refers to, if it is an entity of this arena.
    pub(super) fn slot(&self, entity: EntityRef) -> Option<Slot<S>>
    where
        S: Tracked,
    {
        (entity.entity_type == S::ENTITY_TYPE && (entity.index as usize) < self.items.len())
            .then_some(Slot::new(entity.index))
    }

    /// The entity at a position taken from the public [`EntityRef`].
    fn get(&self, index: u32) -> Option<&Entity<S>> {
        self.items.get(index as usize)
    }

    pub(super) fn find(&self, id: &str) -> Option<Slot<S>> {
        let hash = self.hasher.hash_one(id.as_bytes());
        self.index
            .find(hash, |&slot| self.items[slot as usize].id.as_bytes() == id.as_bytes())
            .map(|&slot| Slot::new(slot))
    }

    pub(super) fn get_or_insert(&mut self, id: &str) -> Slot<S> {
        let hash = self.hasher.hash_one(id.as_bytes());
        let items = &self.items;
        if let Some(&slot) =
            self.index.find(hash, |&slot| items[slot as usize].id.as_bytes() == id.as_bytes())
        {
            return Slot::new(slot);
        }
        let slot = self.items.len() as u32;
        self.items.push(Entity {
            id: EntityId::new(id),
            state: None,
            entered_at: Timestamp::MIN,
            visit: VisitId(0),
            account: Packed::NONE,
            region: Packed::NONE,
            plan: Packed::NONE,
            live_projects: 0,
        });
        let items = &self.items;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, slot, |&other| hasher.hash_one(items[other as usize].id.as_bytes()));
        Slot::new(slot)
    }
}

/// Slots come only from their own arena, which never shrinks, so indexing
/// with one cannot go out of bounds.
impl<S> Index<Slot<S>> for Arena<S> {
    type Output = Entity<S>;

    fn index(&self, slot: Slot<S>) -> &Entity<S> {
        &self.items[slot.index as usize]
    }
}

impl<S> IndexMut<Slot<S>> for Arena<S> {
    fn index_mut(&mut self, slot: Slot<S>) -> &mut Entity<S> {
        &mut self.items[slot.index as usize]
    }
}

/// Plans, regions and quota resources, stored once.
#[derive(Default)]
pub(super) struct Interner {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, Name, foldhash::fast::RandomState>,
}

impl Interner {
    pub(super) fn intern(&mut self, name: &str) -> Name {
        if let Some(&index) = self.index.get(name) {
            return index;
        }
        let index = Name(self.names.len() as u32);
        self.names.push(name.into());
        self.index.insert(name.into(), index);
        index
    }

    pub(super) fn get(&self, name: Name) -> &str {
        self.names.get(name.0 as usize).map_or("", |name| name)
    }
}

/// The state an entity is in and when it entered it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Visit {
    pub(super) state: State,
    pub(super) entered_at: Timestamp,
    pub(super) id: VisitId,
}

/// The fields of one entity, whatever its type.
pub(super) struct EntityFields<'a> {
    pub(super) id: &'a str,
    pub(super) state: Option<State>,
    pub(super) entered_at: Timestamp,
    pub(super) account: Option<AccountSlot>,
    pub(super) region: Option<Name>,
    pub(super) plan: Option<Name>,
    pub(super) live_projects: u32,
}

impl<S: Tracked> Entity<S> {
    fn fields(&self) -> EntityFields<'_> {
        EntityFields {
            id: self.id.as_str(),
            state: self.state.map(Into::into),
            entered_at: self.entered_at,
            account: self.account.get(),
            region: self.region.get(),
            plan: self.plan.get(),
            live_projects: self.live_projects,
        }
    }

    fn visit(&self) -> Option<Visit> {
        Some(Visit { state: self.state?.into(), entered_at: self.entered_at, id: self.visit })
    }
}

/// Every tracked entity and the names they refer to.
#[derive(Default)]
pub(super) struct Entities {
    pub(super) accounts: Arena<AccountState>,
    pub(super) projects: Arena<ProjectState>,
    pub(super) disputes: Arena<DisputeState>,
    pub(super) names: Interner,
}

/// Runs `$body` with `$item` bound to the entity `$entity` refers to in
/// `$entities`, whatever its type (`None` when there is no such entity).
macro_rules! with_entity {
    ($entities:expr, $entity:expr, |$item:ident| $body:expr) => {
        match $entity.entity_type {
            EntityType::Account => $entities.accounts.get($entity.index).map(|$item| $body),
            EntityType::Project => $entities.projects.get($entity.index).map(|$item| $body),
            EntityType::Dispute => $entities.disputes.get($entity.index).map(|$item| $body),
        }
    };
}

impl Entities {
    pub(super) fn count(&self) -> usize {
        self.accounts.len() + self.projects.len() + self.disputes.len()
    }

    pub(super) fn fields(&self, entity: EntityRef) -> Option<EntityFields<'_>> {
        with_entity!(self, entity, |item| item.fields())
    }

    /// The visit the entity is on, if it exists and has a state.
    pub(super) fn visit_of(&self, entity: EntityRef) -> Option<Visit> {
        with_entity!(self, entity, |item| item.visit()).flatten()
    }

    /// The entity's id (empty for an entity that does not exist).
    pub(super) fn name_of(&self, entity: EntityRef) -> &str {
        with_entity!(self, entity, |item| item.id()).unwrap_or_default()
    }

    pub(super) fn find(&self, entity_type: EntityType, id: &str) -> Option<EntityRef> {
        match entity_type {
            EntityType::Account => self.accounts.find(id).map(EntityRef::from),
            EntityType::Project => self.projects.find(id).map(EntityRef::from),
            EntityType::Dispute => self.disputes.find(id).map(EntityRef::from),
        }
    }

    /// Starts a new visit of `entity` at `at` and returns it.
    pub(super) fn enter(&mut self, entity: EntityRef, at: Timestamp) -> Option<VisitId> {
        let index = entity.index as usize;
        match entity.entity_type {
            EntityType::Account => self.accounts.items.get_mut(index).map(|item| item.enter(at)),
            EntityType::Project => self.projects.items.get_mut(index).map(|item| item.enter(at)),
            EntityType::Dispute => self.disputes.items.get_mut(index).map(|item| item.enter(at)),
        }
    }
}
